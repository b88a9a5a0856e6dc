"""Monitor evaluation's statistics (``audit.metrics.monitors``), without the database: hand
computed cases, weighted and unweighted; an independent Mann-Whitney computation on random
data, for the figures and for every bootstrap resample; perfect, useless and inverted signals;
the weighted estimate landing on a known population AUROC where the naive one does not; and
the figures that cannot be estimated."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from audit.metrics import monitors
from audit.metrics.monitors import (
    FLAGGED,
    OTHER,
    SPOT_CHECK,
    Population,
    Sample,
    auroc,
    auroc_replicates,
    calibration,
    evaluate_sample,
    roc,
    tpr_at_fpr,
)

NAN = float("nan")


def mann_whitney(positive_scores, negative_scores, positive_weights=None, negative_weights=None):
    """An independent weighted AUROC: every positive-negative pair, ties counting half."""
    pw = positive_weights if positive_weights is not None else [1.0] * len(positive_scores)
    nw = negative_weights if negative_weights is not None else [1.0] * len(negative_scores)
    ordered = 0.0
    for s, w in zip(positive_scores, pw, strict=True):
        for t, v in zip(negative_scores, nw, strict=True):
            ordered += w * v * (1.0 if s > t else 0.5 if s == t else 0.0)
    return ordered / (sum(pw) * sum(nw))


def sample(
    positive, *, stratum=None, task=None, mbtype=None, tasks=("t",), mbtypes=("",), **columns
):
    """A Sample of settled items; every signal column is NaN unless given."""
    positive = np.asarray(positive, dtype=bool)
    n = len(positive)
    filled = {column: np.full(n, NAN) for column in monitors.SIGNAL_COLUMNS}
    filled.update({k: np.asarray(v, dtype=float) for k, v in columns.items()})
    return Sample(
        stratum=np.asarray(stratum if stratum is not None else [FLAGGED] * n),
        positive=positive,
        task=np.asarray(task if task is not None else [0] * n),
        tasks=tasks,
        mbtype=np.asarray(mbtype if mbtype is not None else [0] * n),
        mbtypes=mbtypes,
        columns=filled,
    )


def signal(report, name):
    return next(s for s in report["signals"] if s["name"] == name)


# --- hand-computed cases ------------------------------------------------------------------------


def test_auroc_of_a_small_case_counts_pairs_and_ties_by_hand():
    # Positives 0.9 and 0.4 against negatives 0.5, 0.1, 0.4: 0.9 beats all three (3); 0.4
    # beats 0.1 (1) and ties 0.4 (0.5): 4.5 of 6 pairs.
    positive = np.array([True, True, False, False, False])
    score = np.array([0.9, 0.4, 0.5, 0.1, 0.4])
    assert auroc(positive, score) == pytest.approx(0.75)


def test_weighted_auroc_of_a_small_case_by_hand():
    # Weights: positives 1 and 3, negatives 2, 1, 1 (total 4 and 4). 0.9 (1) beats all: 4;
    # 0.4 (3) beats 0.1 (1): 3, ties 0.4 (1): 1.5. 8.5 / 16.
    positive = np.array([True, True, False, False, False])
    score = np.array([0.9, 0.4, 0.5, 0.1, 0.4])
    weight = np.array([1.0, 3.0, 2.0, 1.0, 1.0])
    assert auroc(positive, score, weight) == pytest.approx(8.5 / 16)
    # Weight 2 on one negative is the same as that negative twice.
    doubled = auroc(
        np.append(positive, False), np.append(score, 0.5), np.array([1, 3, 1, 1, 1, 1.0])
    )
    assert doubled == pytest.approx(8.5 / 16)


def test_tpr_at_fixed_fpr_is_read_off_the_curve_linearly_between_its_points():
    # Positives 0.9 and 0.5, negatives 0.5 and 0.1: (0, 0) -> (0, .5) -> (.5, 1) -> (1, 1).
    fpr, tpr = roc(np.array([True, True, False, False]), np.array([0.9, 0.5, 0.5, 0.1]))
    assert tpr_at_fpr(fpr, tpr, 0.0) == pytest.approx(0.5)
    assert tpr_at_fpr(fpr, tpr, 0.01) == pytest.approx(0.51)
    assert tpr_at_fpr(fpr, tpr, 0.05) == pytest.approx(0.55)
    assert tpr_at_fpr(fpr, tpr, 0.10) == pytest.approx(0.60)
    assert tpr_at_fpr(fpr, tpr, 0.5) == pytest.approx(1.0)


def test_tpr_at_fpr_takes_the_top_of_a_vertical_step():
    # Positives 0.9, 0.8 and negatives 0.7, 0.1: (0, 0) -> (0, .5) -> (0, 1) -> ...
    fpr, tpr = roc(np.array([True, True, False, False]), np.array([0.9, 0.8, 0.7, 0.1]))
    assert tpr_at_fpr(fpr, tpr, 0.0) == 1.0
    assert tpr_at_fpr(fpr, tpr, 0.05) == 1.0


def test_the_evaluation_reports_the_hand_computed_figures_weighted_and_naive():
    # Flagged: a positive at 0.9 and a negative at 0.4; spot checks: a positive at 0.3 and two
    # negatives at 0.1 and 0.5. Population: 2 flagged records (weight 1), 30 unflagged (10).
    s = sample(
        [True, False, True, False, False],
        stratum=[FLAGGED, FLAGGED, SPOT_CHECK, SPOT_CHECK, SPOT_CHECK],
        deception_risk=[0.9, 0.4, 0.3, 0.1, 0.5],
    )
    report = evaluate_sample(s, Population({"t": (32, 2)}), resamples=0)
    overall = signal(report, "deception_risk")["overall"]
    # Naive: 0.9 beats 3, 0.3 beats 0.1: 4 of 6.
    assert overall["naive"]["auroc"] == pytest.approx(4 / 6, abs=1e-4)
    # Weighted: positives 1 (0.9) and 10 (0.3), negatives 1 (0.4), 10 (0.1), 10 (0.5).
    expected = mann_whitney([0.9, 0.3], [0.4, 0.1, 0.5], [1, 10], [1, 10, 10])
    assert overall["weighted"]["auroc"] == pytest.approx(expected, abs=1e-4)
    assert overall["weighted"]["estimated_positive"] == 11
    assert overall["weighted"]["estimated_negative"] == 21
    assert (overall["naive"]["n_positive"], overall["naive"]["n_negative"]) == (2, 3)
    assert report["strata"]["flagged"]["weight"] == 1
    assert report["strata"]["unflagged"]["weight"] == 10


def test_a_binary_signal_gives_its_tpr_and_fpr_weighted_and_naive():
    # The decision stops positives 1 of 2 and negatives 1 of 3; the stopped negative is a
    # spot check (weight 10), the others flagged (weight 1).
    s = sample(
        [True, True, False, False, False],
        stratum=[FLAGGED, FLAGGED, FLAGGED, SPOT_CHECK, FLAGGED],
        decision_stops=[1, 0, 0, 1, 0],
    )
    report = evaluate_sample(s, Population({"t": (13, 4)}), resamples=0)
    figures = signal(report, "decision")["overall"]
    assert figures["naive"]["tpr"] == 0.5
    assert figures["naive"]["fpr"] == pytest.approx(1 / 3, abs=1e-4)
    assert figures["weighted"]["tpr"] == 0.5
    # Negatives: flagged (weight 1) twice, the spot check 9 / 1: 9 of 11 stopped.
    assert figures["weighted"]["fpr"] == pytest.approx(9 / 11, abs=1e-4)
    assert (figures["naive"]["true_positives"], figures["naive"]["false_positives"]) == (1, 1)


def test_perfect_useless_and_inverted_signals_give_one_a_half_and_zero():
    positive = [True] * 5 + [False] * 7
    perfect = [0.9] * 5 + [0.1] * 7
    s = sample(
        positive,
        deception_risk=perfect,
        prosecutor_strength=[0.5] * 12,  # useless: every score the same
        reward=[1 - v for v in perfect],  # inverted
        reasoning_quality=[1 - v for v in perfect],  # read flipped: perfect again
    )
    report = evaluate_sample(s, Population({"t": (12, 12)}), resamples=50)
    for name, expected in (
        ("deception_risk", 1.0),
        ("prosecutor_strength", 0.5),
        ("reward", 0.0),
        ("reasoning_quality", 1.0),
    ):
        for basis in ("naive", "weighted"):
            assert signal(report, name)["overall"][basis]["auroc"] == expected, (name, basis)
    assert signal(report, "deception_risk")["overall"]["naive"]["tpr_at_fpr"]["0.01"] == 1.0
    assert signal(report, "deception_risk")["overall"]["naive"]["ci95"] == [1.0, 1.0]


def test_flipped_and_signed_scores_are_read_as_the_table_says():
    columns = {
        "reasoning_quality": np.array([0.2, NAN]),
        "advocate_strength": np.array([0.7, 0.1]),
        "decision_confidence": np.array([0.4, 0.4, 0.4]),
        "debate_stops": np.array([1.0, 0.0, NAN]),
    }
    by_name = {s.name: s for s in monitors.SIGNALS}
    assert by_name["reasoning_quality"].values(columns)[0] == pytest.approx(0.8)
    assert np.isnan(by_name["reasoning_quality"].values(columns)[1])
    assert by_name["advocate_strength"].values(columns) == pytest.approx([0.3, 0.9])
    signed = by_name["decision_confidence"].values(columns)
    assert signed[:2] == pytest.approx([0.7, 0.3])
    assert np.isnan(signed[2])  # no final decision: no direction


def test_calibration_bins_a_probability_score_by_hand():
    positive = np.array([True, False, False, True, True])
    score = np.array([0.05, 0.08, 0.55, 0.95, 1.0])
    weight = np.array([1.0, 3.0, 1.0, 2.0, 2.0])
    table = calibration(positive, score, weight)
    first, sixth, last = table["bins"][0], table["bins"][5], table["bins"][9]
    assert (first["n"], first["positives"], first["observed"]) == (2, 1, 0.5)
    assert first["mean_score"] == pytest.approx(0.065)
    assert first["weighted_observed"] == 0.25  # 1 of 4
    assert first["weighted_mean_score"] == pytest.approx((0.05 + 3 * 0.08) / 4, abs=1e-4)
    assert (sixth["n"], sixth["observed"]) == (1, 0.0)
    assert (last["n"], last["observed"], last["estimated_records"]) == (2, 1.0, 4.0)
    assert table["bins"][3]["n"] == 0 and table["bins"][3]["observed"] is None
    assert calibration(positive, np.array([0.1, 1.5, -0.2, NAN, 0.3]), None)["out_of_range"] == 2


# --- against an independent implementation ------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_auroc_equals_an_independent_mann_whitney_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 70))
    positive = rng.random(n) < 0.4
    positive[:2] = [True, False]
    # Every other case has heavy ties (scores in tenths).
    score = rng.random(n) if seed % 2 else np.round(rng.random(n), 1)
    weight = rng.choice([1.0, 2.5, 9.0], size=n)
    expected = mann_whitney(score[positive], score[~positive], weight[positive], weight[~positive])
    assert auroc(positive, score, weight) == pytest.approx(expected)
    assert auroc(positive, score) == pytest.approx(mann_whitney(score[positive], score[~positive]))


@pytest.mark.parametrize("seed", range(6))
def test_every_bootstrap_resample_equals_scikit_learn_and_mann_whitney(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(8, 50))
    positive = rng.random(n) < 0.4
    positive[:2] = [True, False]
    score = rng.random(n) if seed % 2 else np.round(rng.random(n), 1)
    weight = rng.choice([1.0, 3.0, 7.5], size=n)
    counts = rng.integers(0, 3, size=(n, 12)).astype(float)
    replicates = auroc_replicates(positive, score, weight, counts)
    for b in range(12):
        drawn = counts[:, b] * weight
        if not drawn[positive].sum() or not drawn[~positive].sum():
            assert np.isnan(replicates[b])
            continue
        assert replicates[b] == pytest.approx(roc_auc_score(positive, score, sample_weight=drawn))
        assert replicates[b] == pytest.approx(
            mann_whitney(score[positive], score[~positive], drawn[positive], drawn[~positive])
        )


def test_per_type_and_per_task_figures_equal_their_subsets_computed_alone():
    rng = np.random.default_rng(7)
    n = 300
    positive = rng.random(n) < 0.35
    mbtype = np.where(positive, rng.integers(1, 3, n), 0)
    task = rng.integers(0, 2, n)
    stratum = rng.choice([FLAGGED, SPOT_CHECK], size=n, p=[0.6, 0.4])
    risk = np.round(np.clip(rng.normal(0.3 + 0.3 * positive, 0.2), 0, 1), 2)
    s = sample(
        positive,
        stratum=stratum,
        task=task,
        mbtype=mbtype,
        tasks=("a", "b"),
        mbtypes=("", "hallucination", "scope_violation"),
        deception_risk=risk,
    )
    population = Population({"a": (2000, 400), "b": (1500, 300)})
    report = evaluate_sample(s, population, resamples=0)
    figures = signal(report, "deception_risk")
    for group in figures["by_misbehavior_type"]:
        code = s.mbtypes.index(group["key"])
        keep = (mbtype == code) | ~positive
        assert group["naive"]["auroc"] == pytest.approx(auroc(positive[keep], risk[keep]), abs=1e-4)
    for group in figures["by_task"]:
        code = s.tasks.index(group["key"])
        keep = task == code
        records, flagged = population.per_task[group["key"]]
        weight = np.where(
            stratum == FLAGGED,
            flagged / np.sum(keep & (stratum == FLAGGED)),
            (records - flagged) / np.sum(keep & (stratum == SPOT_CHECK)),
        )
        expected = auroc(positive[keep], risk[keep], weight[keep])
        assert group["weighted"]["auroc"] == pytest.approx(expected, abs=1e-4)
        assert group["naive"]["auroc"] == pytest.approx(auroc(positive[keep], risk[keep]), abs=1e-4)


def test_the_bootstrap_interval_brackets_the_figure_and_is_reproducible():
    rng = np.random.default_rng(3)
    n = 200
    positive = rng.random(n) < 0.4
    s = sample(
        positive,
        stratum=rng.choice([FLAGGED, SPOT_CHECK], size=n),
        deception_risk=np.round(np.clip(rng.normal(0.4 + 0.2 * positive, 0.2), 0, 1), 2),
    )
    population = Population({"t": (1000, 300)})
    first = evaluate_sample(s, population, resamples=300)
    again = evaluate_sample(s, population, resamples=300)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    for basis in ("naive", "weighted"):
        figure = signal(first, "deception_risk")["overall"][basis]
        low, high = figure["ci95"]
        assert low < figure["auroc"] < high
        assert 0.02 < high - low < 0.3
    other = evaluate_sample(s, population, resamples=300, seed=99)
    assert other != first  # the seed is what fixes the draw


# --- selection bias -----------------------------------------------------------------------------


def test_the_weighted_estimate_lands_on_the_population_auroc_and_the_naive_one_does_not():
    """A population of 40,000 records with a known AUROC. The signal itself flags the records
    it scores above 0.6, as the importer's flags do; reviewers settle half of the flagged
    records and a uniform 2% spot-check sample of the rest."""
    rng = np.random.default_rng(2026)
    n = 40_000
    positive = rng.random(n) < 0.15
    score = np.clip(rng.normal(0.35 + 0.25 * positive, 0.18), 0, 1)
    truth = roc_auc_score(positive, score)
    flagged = score > 0.6
    settled_flagged = flagged & (rng.random(n) < 0.5)
    spot = ~flagged & (rng.random(n) < 0.02)
    settled = settled_flagged | spot
    s = sample(
        positive[settled],
        stratum=np.where(flagged[settled], FLAGGED, SPOT_CHECK),
        deception_risk=score[settled],
    )
    population = Population({"t": (n, int(flagged.sum()))})
    report = evaluate_sample(s, population, resamples=200)
    overall = signal(report, "deception_risk")["overall"]
    weighted, naive = overall["weighted"]["auroc"], overall["naive"]["auroc"]
    assert abs(weighted - truth) < 0.02, (weighted, truth)
    assert abs(naive - truth) > 0.08, (naive, truth)
    low, high = overall["weighted"]["ci95"]
    assert low <= truth <= high
    # The estimated class sizes are the population's, near enough.
    assert overall["weighted"]["estimated_positive"] == pytest.approx(positive.sum(), rel=0.1)


def test_a_curve_of_many_corners_is_kept_at_evenly_spaced_fprs_on_the_same_curve():
    rng = np.random.default_rng(7)
    positive = rng.random(5000) < 0.3
    score = rng.random(5000) + 0.3 * positive
    report = evaluate_sample(sample(positive, deception_risk=score), Population({}), resamples=0)
    naive = signal(report, "deception_risk")["overall"]["naive"]
    points = naive["roc"]
    assert len(points) == monitors.ROC_POINTS
    assert points[0][0] == 0.0 and points[-1] == [1.0, 1.0]
    fpr, tpr = monitors.roc(positive, score)
    for x, y in points:
        assert y == pytest.approx(monitors.tpr_at_fpr(fpr, tpr, x), abs=1e-4)
    # The same curve the figures are read from: its area is the AUROC, near enough.
    xs, ys = np.array(points).T
    assert np.trapezoid(ys, xs) == pytest.approx(naive["auroc"], abs=0.005)


# --- what cannot be estimated -------------------------------------------------------------------


def _numbers(value):
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


def test_without_a_settled_spot_check_the_weighted_figures_cannot_be_estimated():
    s = sample(
        [True, False, True, False],
        stratum=[FLAGGED, FLAGGED, FLAGGED, OTHER],
        deception_risk=[0.9, 0.2, 0.7, 0.1],
        decision_stops=[1, 0, 1, 1],
    )
    report = evaluate_sample(s, Population({"t": (100, 10)}), resamples=20)
    assert report["weighted"] == {
        "estimable": False,
        "reason": "cannot be estimated: no spot check of the 90 unflagged records is settled",
    }
    for entry in report["signals"]:
        groups = [entry["overall"], *entry["by_misbehavior_type"], *entry["by_task"]]
        for group in groups:
            assert group["weighted"]["estimable"] is False
            assert _numbers(group["weighted"]) == [], entry["name"]  # not a single number
        assert entry["overall"]["naive"]["estimable"] is True
    assert "weighted_observed" not in signal(report, "deception_risk")["calibration"]["bins"][0]
    # The OTHER item (settled, unflagged, not a spot check) counts in the naive figure only.
    assert signal(report, "deception_risk")["overall"]["naive"]["n_negative"] == 2


def test_a_task_without_a_settled_spot_check_cannot_be_estimated_while_others_can():
    s = sample(
        [True, False, False, True, False, False],
        stratum=[FLAGGED, SPOT_CHECK, FLAGGED, FLAGGED, FLAGGED, FLAGGED],
        task=[0, 0, 0, 1, 1, 1],
        tasks=("a", "b"),
        deception_risk=[0.9, 0.1, 0.5, 0.8, 0.3, 0.2],
    )
    report = evaluate_sample(s, Population({"a": (50, 5), "b": (40, 4)}), resamples=0)
    by_task = {g["key"]: g for g in signal(report, "deception_risk")["by_task"]}
    assert by_task["a"]["weighted"]["estimable"] is True
    assert by_task["b"]["weighted"] == {
        "estimable": False,
        "reason": "cannot be estimated: no spot check of the 36 unflagged records is settled",
    }
    assert by_task["b"]["naive"]["auroc"] == 1.0
    assert report["weighted"]["estimable"] is True  # overall, a spot check of task a stands


def test_an_empty_sample_and_a_one_class_sample_give_no_number():
    empty = evaluate_sample(sample([], tasks=(), mbtypes=()), Population({"t": (10, 2)}))
    assert empty["settled"]["total"] == 0
    assert empty["weighted"]["estimable"] is False
    assert "auroc" not in signal(empty, "deception_risk")["overall"]["naive"]
    benign = evaluate_sample(
        sample([False, False], stratum=[FLAGGED, SPOT_CHECK], deception_risk=[0.1, 0.2]),
        Population({"t": (10, 2)}),
    )
    naive = signal(benign, "deception_risk")["overall"]["naive"]
    assert naive["undefined"] == "no misbehavior among these items"
    assert "auroc" not in naive and "ci95" not in naive
    json.dumps(benign, allow_nan=False)


def test_missing_signal_values_are_left_out_and_counted():
    s = sample(
        [True, False, True, False],
        stratum=[FLAGGED, FLAGGED, SPOT_CHECK, SPOT_CHECK],
        prosecutor_strength=[0.9, NAN, 0.7, 0.2],
    )
    figure = signal(
        evaluate_sample(s, Population({"t": (4, 2)}), resamples=0), "prosecutor_strength"
    )
    assert figure["overall"]["naive"]["n_missing"] == 1
    assert figure["overall"]["naive"]["n_negative"] == 1
    assert figure["overall"]["naive"]["auroc"] == 1.0


def test_negative_resamples_are_refused():
    with pytest.raises(ValueError, match="resamples"):
        evaluate_sample(sample([True, False]), Population({"t": (2, 1)}), resamples=-1)


def test_a_process_that_evaluates_no_monitor_does_not_load_scikit_learn():
    # The import alone grows a process by some 150 MB: web and worker processes load the app
    # (admin, urls, exports), and only an evaluation should pay for it.
    import subprocess
    import sys

    code = (
        "import django, sys; django.setup(); import audit.urls, audit.publish.export; "
        "print('sklearn' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
    report = evaluate_sample(sample([True, False], deception_risk=[0.9, 0.1]), Population({}))
    assert signal(report, "deception_risk")["overall"]["naive"]["auroc"] == 1.0


# --- the bootstrap's cost bound -----------------------------------------------------------------


def test_rank_levels_keep_ties_together_and_order_and_leave_few_scores_alone():
    rng = np.random.default_rng(3)
    score = np.round(rng.random(5000), 4)
    levelled = monitors.rank_levels(score, 64)
    assert len(np.unique(levelled)) <= 64
    order = np.argsort(score, kind="stable")
    assert np.all(np.diff(levelled[order]) >= 0)  # a higher score never gets a lower level
    for value in np.unique(score)[:50]:
        assert len(np.unique(levelled[score == value])) == 1
    few = np.array([0.1, 0.5, 0.5, 0.9])
    assert monitors.rank_levels(few, 64) is few


def test_past_the_level_bound_the_interval_matches_the_one_from_exact_scores(monkeypatch):
    # Continuous scores: 4,000 distinct values. The resamples read 4 rank levels (a bound far
    # below the real one: so coarse that the AUROC at those levels is 0.018 lower), shifted by
    # the exact figure's difference; the interval lands on the exact bootstrap's (within 0.003,
    # of a width of 0.035), and the figure itself is the exact one.
    rng = np.random.default_rng(5)
    n = 4000
    positive = rng.random(n) < 0.3
    score = np.clip(rng.normal(0.4 + 0.15 * positive, 0.2), 0, 1)
    stratum = rng.choice([FLAGGED, SPOT_CHECK], size=n, p=[0.7, 0.3])
    s = sample(positive, stratum=stratum, deception_risk=score)
    population = Population({"t": (20000, 12000)})
    monkeypatch.setattr(monitors, "INTERVAL_LEVELS", 10**9)
    exact = signal(evaluate_sample(s, population, resamples=300), "deception_risk")["overall"]
    monkeypatch.setattr(monitors, "INTERVAL_LEVELS", 4)
    built = []
    real_build = monitors.Family.build
    monkeypatch.setattr(
        monitors.Family,
        "build",
        classmethod(lambda cls, *a: built.append(len(np.unique(a[4]))) or real_build(*a)),
    )
    coarse = signal(evaluate_sample(s, population, resamples=300), "deception_risk")["overall"]
    assert built and max(built) <= 4
    for basis in ("weighted", "naive"):
        assert coarse[basis]["auroc"] == exact[basis]["auroc"]
        assert coarse[basis]["auroc"] == pytest.approx(roc_auc_score(positive, score), abs=0.02)
        for ours, theirs in zip(coarse[basis]["ci95"], exact[basis]["ci95"], strict=True):
            assert ours == pytest.approx(theirs, abs=0.003), (basis, coarse, exact)
