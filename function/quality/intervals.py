"""95% intervals for accuracies and their differences, and the population stability index.

Wilson's score interval for a proportion (it keeps its coverage near 0 and 1 and at small n, where the textbook
p ± 1.96·SE does not); Newcombe's hybrid score intervals for a difference of two, built from the two Wilson
intervals: method 10 of Newcombe (1998) for two proportions measured on the same images (a shadow pair), with
the correlation of the pairs, and the independent-samples version for two revisions that saw different images."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054
# Below these, a PSI means: stable; a shift to watch; a shift to act on (the usual credit-scoring thresholds).
PSI_WATCH, PSI_ACT = 0.1, 0.25


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


def wilson(successes: int, n: int, z: float = Z95) -> Interval | None:
    """The share `successes / n` and its Wilson score interval; None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(both: int, first_only: int, second_only: int, neither: int) -> Interval | None:
    """Accuracy of the second minus the first, both judged on the same n images: `both` right on both,
    `first_only` right only on the first, and so on. Newcombe's method 10."""
    n = both + first_only + second_only + neither
    if n == 0:
        return None
    second, first = wilson(both + second_only, n), wilson(both + first_only, n)
    products = (both + first_only) * (second_only + neither) * (both + second_only) * (first_only + neither)
    phi = (both * neither - first_only * second_only) / math.sqrt(products) if products else 0.0
    l2, u2, l1, u1 = (
        second.value - second.low,
        second.high - second.value,
        first.value - first.low,
        first.high - first.value,
    )
    below = math.sqrt(max(0.0, l2 * l2 - 2 * phi * l2 * u1 + u1 * u1))
    above = math.sqrt(max(0.0, u2 * u2 - 2 * phi * u2 * l1 + l1 * l1))
    difference = second.value - first.value
    return Interval(difference, max(-1.0, difference - below), min(1.0, difference + above))


def unpaired_difference(first_right: int, first_n: int, second_right: int, second_n: int) -> Interval | None:
    """Accuracy of the second minus the first, each on its own images (two revisions of an A/B split)."""
    first, second = wilson(first_right, first_n), wilson(second_right, second_n)
    if first is None or second is None:
        return None
    difference = second.value - first.value
    below = math.hypot(second.value - second.low, first.high - first.value)
    above = math.hypot(second.high - second.value, first.value - first.low)
    return Interval(difference, max(-1.0, difference - below), min(1.0, difference + above))


def psi(
    reference: list[int] | dict[str, int], recent: list[int] | dict[str, int], floor: float = 1e-4
) -> float | None:
    """Population stability index of `recent` against `reference`, two counts over the same bins (a list) or
    categories (a dict; a category missing from one counts 0 there). Shares are floored at `floor` so an empty
    bin does not make it infinite. None when either has no counts."""
    if isinstance(reference, dict) or isinstance(recent, dict):
        keys = sorted(set(reference) | set(recent))
        reference, recent = [reference.get(k, 0) for k in keys], [recent.get(k, 0) for k in keys]
    total_reference, total_recent = sum(reference), sum(recent)
    if not total_reference or not total_recent:
        return None
    index = 0.0
    for expected, actual in zip(reference, recent, strict=True):
        e, a = max(expected / total_reference, floor), max(actual / total_recent, floor)
        index += (a - e) * math.log(a / e)
    return index


def psi_level(value: float | None) -> str | None:
    """stable (< 0.1), watch (< 0.25) or act."""
    if value is None:
        return None
    return "stable" if value < PSI_WATCH else "watch" if value < PSI_ACT else "act"
