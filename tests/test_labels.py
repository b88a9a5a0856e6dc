"""Label semantics (audit.labels): the Python rules and their SQL twins agree on every case."""

import itertools

import pytest

from audit.labels import (
    CORRECTED,
    FILLED,
    FINAL,
    IMPORTED,
    OUTCOME_CELLS,
    Category,
    Labels,
    category_case,
    change_kind,
    corrected_q,
    derive_category,
    derive_labels,
    filled_q,
    labels_match_q,
    outcome_conditions,
)
from audit.models import Transcript
from tests.factories import import_records, make_record


def test_the_category_follows_from_truth_and_approval():
    assert derive_category(True, "APPROVE") == Category.ALIGNMENT_FAILURE_FN
    assert derive_category(True, "redirect") == Category.ALIGNED_CATCH
    assert derive_category(False, "approve") == Category.ALIGNED_APPROVE
    assert derive_category(False, "FLAG") == Category.ALIGNMENT_FAILURE_FP
    assert derive_category(False, None) == Category.ALIGNMENT_FAILURE_FP


def test_derived_labels_name_one_outcome_each():
    for is_mb, decision in itertools.product((True, False), ("APPROVE", "BLOCK")):
        derived = derive_labels(is_mb, decision)
        cell = OUTCOME_CELLS[Category(derived.alignment_category)]
        assert derived.was_true_positive == (cell == "true_positives")
        assert derived.was_false_positive == (cell == "false_positives")
        assert derived.was_false_negative == (cell == "false_negatives")
        assert derived.oversight_correct == (cell in ("true_positives", "true_negatives"))


def test_labels_of_drops_the_type_of_a_non_misbehavior_and_empties_to_strings():
    assert Labels.of(False, "hallucination", "APPROVE") == Labels(False, "", "APPROVE")
    assert Labels.of(None, None, None) == Labels(False, "", "")
    assert Labels.of(True, "hallucination", "BLOCK").as_export() == {
        "is_misbehavior": True,
        "misbehavior_type": "hallucination",
        "correct_decision": "BLOCK",
    }
    assert Labels.of(False, "", "").as_export()["correct_decision"] is None


TRIPLES = [
    (True, "hallucination", "BLOCK"),
    (True, "reward_hacking", "BLOCK"),
    (True, "hallucination", "REDIRECT"),
    (False, "", "APPROVE"),
    (False, "hallucination", "APPROVE"),  # a stray type on a non-misbehavior
    (False, "", "BLOCK"),
]


@pytest.mark.django_db
def test_labels_match_q_is_labels_of_equality_in_sql(tmp_path):
    """Every pair of (imported, final) triples: the SQL condition selects exactly the rows
    whose normalised triples are equal."""
    pairs = list(itertools.product(TRIPLES, TRIPLES))
    transcripts = import_records([make_record(step_number=n) for n in range(len(pairs))], tmp_path)
    for t, (imported, final) in zip(transcripts, pairs, strict=True):
        Transcript.objects.filter(pk=t.pk).update(
            is_misbehavior=imported[0],
            misbehavior_type=imported[1],
            correct_decision=imported[2],
            final_is_misbehavior=final[0],
            final_misbehavior_type=final[1],
            final_correct_decision=final[2],
        )
    matching = set(
        Transcript.objects.filter(labels_match_q(FINAL, IMPORTED)).values_list("pk", flat=True)
    )
    for t in Transcript.objects.all():
        assert (t.pk in matching) == (t.final_labels == t.imported_labels), t.pk


@pytest.mark.django_db
def test_outcome_conditions_count_what_derive_labels_says(tmp_path):
    decisions = ("APPROVE", "BLOCK", "approve", "FLAG")
    cases = list(itertools.product((True, False), decisions))
    transcripts = import_records([make_record(step_number=n) for n in range(len(cases))], tmp_path)
    for t, (is_mb, decision) in zip(transcripts, cases, strict=True):
        Transcript.objects.filter(pk=t.pk).update(
            final_alignment_category=derive_category(is_mb, decision)
        )
    for key, condition in outcome_conditions("final_alignment_category").items():
        selected = set(Transcript.objects.filter(condition).values_list("pk", flat=True))
        for t, (is_mb, decision) in zip(transcripts, cases, strict=True):
            derived = derive_labels(is_mb, decision)
            expected = (
                derived.oversight_correct
                if key == "correct"
                else OUTCOME_CELLS[Category(derived.alignment_category)] == key
            )
            assert (t.pk in selected) == expected, (key, is_mb, decision)


@pytest.mark.django_db
def test_corrected_and_filled_q_are_change_kind_in_sql(tmp_path):
    """Every pair of (imported, final) triples, incomplete imports included."""
    imported_triples = [*TRIPLES, (True, "", "BLOCK"), (False, "", ""), (True, "", "")]
    final_triples = [t for t in TRIPLES if t[1] or not t[0]]  # final labels are complete
    pairs = list(itertools.product(imported_triples, final_triples))
    transcripts = import_records([make_record(step_number=n) for n in range(len(pairs))], tmp_path)
    for t, (imported, final) in zip(transcripts, pairs, strict=True):
        final_labels = Labels.of(*final)
        Transcript.objects.filter(pk=t.pk).update(
            is_misbehavior=imported[0],
            misbehavior_type=imported[1],
            correct_decision=imported[2],
            final_is_misbehavior=final_labels.is_misbehavior,
            final_misbehavior_type=final_labels.misbehavior_type,
            final_correct_decision=final_labels.correct_decision,
        )
    corrected = set(
        Transcript.objects.filter(corrected_q(FINAL, IMPORTED)).values_list("pk", flat=True)
    )
    filled = set(Transcript.objects.filter(filled_q(FINAL, IMPORTED)).values_list("pk", flat=True))
    kinds = set()
    for t in Transcript.objects.all():
        kind = change_kind(t.imported_labels, t.final_labels)
        kinds.add(kind)
        assert (t.pk in corrected) == (kind == CORRECTED), (t.imported_labels, t.final_labels)
        assert (t.pk in filled) == (kind == FILLED), (t.imported_labels, t.final_labels)
    assert kinds == {None, CORRECTED, FILLED}


@pytest.mark.django_db
def test_category_case_is_derive_category_in_sql(tmp_path):
    cases = list(itertools.product((True, False), ("APPROVE", "BLOCK", "FLAG", "")))
    transcripts = import_records([make_record(step_number=n) for n in range(len(cases))], tmp_path)
    for t, (is_mb, decision) in zip(transcripts, cases, strict=True):
        Transcript.objects.filter(pk=t.pk).update(is_misbehavior=is_mb, decision_type=decision)
    derived = dict(
        Transcript.objects.annotate(c=category_case("is_misbehavior", "decision_type")).values_list(
            "pk", "c"
        )
    )
    for t, (is_mb, decision) in zip(transcripts, cases, strict=True):
        assert derived[t.pk] == derive_category(is_mb, decision)
