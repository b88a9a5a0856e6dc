"""Agreement and interval arithmetic for the dashboard: pure functions, no database.

``audit.metrics.summaries`` fetches the ratings; these functions turn them into figures:
percent agreement, Cohen's kappa (two raters), Krippendorff's alpha (nominal, any number of
raters, missing data) and the Wilson score interval of a proportion. Every function returns
None where the figure is undefined (no data, or a single category so chance agreement is 1).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

import krippendorff
import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def percent_agreement(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Share of units (each a sequence of the values its raters gave) on which every rater gave
    the same value. Units with fewer than two values are not pairable and are left out.

    With K=2 overlap this is the share of items that settled without adjudication on this field.
    """
    pairable = [values for values in units if len(values) >= 2]
    if not pairable:
        return None
    agreeing = sum(1 for values in pairable if len(set(values)) == 1)
    return agreeing / len(pairable)


def cohen_kappa(pairs: Iterable[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa for two raters, from (rater A's value, rater B's value) pairs.

    kappa = (p_o - p_e) / (1 - p_e), p_e from each rater's own marginals. None when there are no
    pairs or chance agreement is 1 (both raters used a single, identical category).
    """
    pairs = list(pairs)
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[value] * second[value] for value in first) / (n * n)
    if math.isclose(expected, 1.0):
        return None
    return (observed - expected) / (1 - expected)


def krippendorff_alpha_nominal(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data. Each unit is the list of values its raters gave;
    raters who did not rate a unit are simply absent (missing data). Nominal alpha depends only
    on how many times each value occurs in each unit, so rater identity is not needed.

    Computed by the ``krippendorff`` package from a units x values count matrix. None when no
    unit has two values or only one value occurs at all (alpha is undefined then).
    """
    # Units with a single value cannot be paired and do not enter alpha at all.
    units = [list(values) for values in units if len(values) >= 2]
    domain = sorted({value for values in units for value in values}, key=repr)
    if len(domain) < 2:
        return None
    index = {value: position for position, value in enumerate(domain)}
    counts = np.zeros((len(units), len(domain)), dtype=np.int64)
    for row, values in enumerate(units):
        for value in values:
            counts[row, index[value]] += 1
    alpha = krippendorff.alpha(value_counts=counts, level_of_measurement="nominal")
    return None if math.isnan(alpha) else float(alpha)


def wilson_interval(successes: int, n: int, *, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion (Wilson 1927; Newcombe 1998, method 3).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 or n successes,
    which is the common case for a small spot-check sample with few label errors.
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
