"""Agreement arithmetic against published worked examples and an independent implementation."""

import math
import random
from collections import Counter
from fractions import Fraction
from itertools import permutations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.metrics.agreement import (
    cohen_kappa,
    krippendorff_alpha_nominal,
    percent_agreement,
    wilson_interval,
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: nominal data,
# four observers, twelve units, missing values (None). Published alpha = 0.743.
KRIPPENDORFF_2011_C = [
    # observer A, B, C, D per unit 1..12
    (1, 1, None, 1),
    (2, 2, 3, 2),
    (3, 3, 3, 3),
    (3, 3, 3, 3),
    (2, 2, 2, 2),
    (1, 2, 3, 4),
    (4, 4, 4, 4),
    (1, 1, 2, 1),
    (2, 2, 2, 2),
    (None, 5, 5, 5),
    (None, None, 1, 1),
    (None, 3, None, None),
]
# Krippendorff (2011), section A: binary data, two observers, ten units. Published alpha = 0.095.
KRIPPENDORFF_2011_A = list(
    zip([0, 1, 0, 0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 0, 0, 1, 0, 0, 0, 0], strict=True)
)


def _units(table):
    return [[value for value in row if value is not None] for row in table]


def _alpha_from_scratch(units):
    """Nominal alpha from the coincidence matrix, written out as in Krippendorff (2011)."""
    coincidences = Counter()
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for c, k in permutations(values, 2):
            coincidences[(c, k)] += 1 / (m - 1)
    totals = Counter()
    for (c, _), weight in coincidences.items():
        totals[c] += weight
    n = sum(totals.values())
    observed = sum(weight for (c, k), weight in coincidences.items() if c != k)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k) / (n - 1)
    return 1 - observed / expected


def test_alpha_matches_krippendorff_2011_nominal_example_with_missing_data():
    assert krippendorff_alpha_nominal(_units(KRIPPENDORFF_2011_C)) == pytest.approx(0.743, abs=5e-4)


def test_alpha_matches_krippendorff_2011_binary_two_observer_example():
    assert krippendorff_alpha_nominal(KRIPPENDORFF_2011_A) == pytest.approx(0.095, abs=5e-4)


def test_alpha_ignores_units_with_a_single_value():
    units = _units(KRIPPENDORFF_2011_C)
    assert krippendorff_alpha_nominal(units + [["only-one"]]) == pytest.approx(
        krippendorff_alpha_nominal(units)
    )


def test_alpha_agrees_with_an_independent_coincidence_matrix_on_random_data():
    rng = random.Random(7)
    for _ in range(25):
        units = [
            [rng.choice("abcd") for _ in range(rng.randint(1, 5))]
            for _ in range(rng.randint(3, 40))
        ]
        if len({v for unit in units if len(unit) > 1 for v in unit}) < 2:
            continue
        assert krippendorff_alpha_nominal(units) == pytest.approx(_alpha_from_scratch(units))


def test_alpha_handles_booleans_and_strings_as_categories():
    units = [[True, True], [False, False], [True, False], ["", "x"], ["x", "x"]]
    assert krippendorff_alpha_nominal(units) == pytest.approx(_alpha_from_scratch(units))


def test_alpha_is_none_when_undefined():
    assert krippendorff_alpha_nominal([]) is None
    assert krippendorff_alpha_nominal([["a"], ["b"]]) is None  # nothing pairable
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) is None  # one category


def test_alpha_is_one_for_perfect_agreement_over_two_categories():
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b", "b"]]) == 1.0


def test_cohen_kappa_matches_the_wikipedia_worked_example():
    # 50 proposals: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> kappa = 0.4.
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_cohen_kappa_hand_computed_three_categories():
    # p_o = 6/8; marginals A: a3 b3 c2, B: a4 b2 c2 -> p_e = (12+6+4)/64; kappa = 0.6279...
    pairs = [
        ("a", "a"), ("a", "a"), ("a", "b"),
        ("b", "b"), ("b", "b"), ("b", "a"),
        ("c", "c"), ("c", "c"),
    ]  # fmt: skip
    expected = (6 / 8 - 22 / 64) / (1 - 22 / 64)
    assert cohen_kappa(pairs) == pytest.approx(expected)


def _kappa_from_scratch(pairs):
    """Cohen (1960) from a k x k confusion matrix, in exact fractions: p_o is the diagonal's
    share, p_e the sum over categories of row marginal times column marginal. None where the
    app defines kappa as undefined: no pairs, or p_e = 1 (one category, used by both raters)."""
    categories = sorted({value for pair in pairs for value in pair}, key=repr)
    index = {value: i for i, value in enumerate(categories)}
    matrix = [[0] * len(categories) for _ in categories]
    for a, b in pairs:
        matrix[index[a]][index[b]] += 1
    n = sum(map(sum, matrix))
    if n == 0:
        return None
    rows = [sum(row) for row in matrix]
    columns = [sum(row[j] for row in matrix) for j in range(len(categories))]
    p_o = Fraction(sum(matrix[i][i] for i in range(len(categories))), n)
    p_e = sum(Fraction(rows[i] * columns[i], n * n) for i in range(len(categories)))
    if p_e == 1:
        return None
    return float((p_o - p_e) / (1 - p_e))


def _assert_same_kappa(pairs):
    expected = _kappa_from_scratch(pairs)
    actual = cohen_kappa(pairs)
    if expected is None:
        assert actual is None, pairs
    else:
        assert actual == pytest.approx(expected, abs=1e-12), pairs


@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.sampled_from("abcd")),
        max_size=60,
    )
)
def test_cohen_kappa_agrees_with_a_confusion_matrix_implementation_on_random_pairs(pairs):
    _assert_same_kappa(pairs)


def test_cohen_kappa_agrees_with_a_confusion_matrix_implementation_on_seeded_pairs():
    # Skewed and uneven category sets too: one rater may use categories the other never does.
    rng = random.Random(20240611)
    for _ in range(300):
        first, second = rng.choice(["ab", "abc", "abcde", "a"]), rng.choice(["ab", "bcd", "a"])
        pairs = [(rng.choice(first), rng.choice(second)) for _ in range(rng.randint(1, 80))]
        _assert_same_kappa(pairs)


@given(st.lists(st.sampled_from([True, False, "", "reward_hacking", "BLOCK"]), min_size=1))
def test_cohen_kappa_is_one_for_perfect_agreement_over_two_or_more_categories(values):
    pairs = [(value, value) for value in values]
    if len(set(values)) < 2:
        assert cohen_kappa(pairs) is None  # a single category: chance agreement is 1
    else:
        assert cohen_kappa(pairs) == pytest.approx(1.0)
    _assert_same_kappa(pairs)


@pytest.mark.parametrize("category", ["a", True, False, ""])
@pytest.mark.parametrize("n", [1, 2, 17])
def test_cohen_kappa_is_none_when_both_raters_use_one_category(category, n):
    pairs = [(category, category)] * n
    assert cohen_kappa(pairs) is None
    assert _kappa_from_scratch(pairs) is None


def test_cohen_kappa_is_defined_when_only_one_rater_uses_a_single_category():
    # p_e = 3/4 here, not 1: kappa is 0 (agreement no better than chance), not undefined.
    pairs = [("a", "a"), ("a", "a"), ("a", "a"), ("a", "b")]
    assert cohen_kappa(pairs) == pytest.approx(0.0)
    _assert_same_kappa(pairs)


def test_cohen_kappa_is_none_without_pairs_or_variation():
    assert cohen_kappa([]) is None
    assert cohen_kappa([("a", "a"), ("a", "a")]) is None


def test_cohen_kappa_is_negative_for_systematic_disagreement():
    assert cohen_kappa([("a", "b"), ("b", "a")]) == pytest.approx(-1.0)


def test_percent_agreement_counts_units_where_every_rater_agrees():
    assert percent_agreement([["a", "a"], ["a", "b"], ["b", "b", "b"], ["c"]]) == pytest.approx(
        2 / 3
    )
    assert percent_agreement([["a"]]) is None


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion",
        # Table I, method 3 (Wilson score, no continuity correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_newcombe_1998(successes, n, low, high):
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(low, abs=5e-5)
    assert hi == pytest.approx(high, abs=5e-5)


def test_wilson_interval_is_none_for_an_empty_sample_and_rejects_impossible_counts():
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_wilson_interval_is_symmetric_around_a_half():
    lo, hi = wilson_interval(5, 10)
    assert math.isclose(lo + hi, 1.0)
