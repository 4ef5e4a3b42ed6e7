"""The arithmetic of the quality loop against published figures, and the rollout rules on their edges."""

from __future__ import annotations

import pytest

from function.quality.comparison import Comparison, Side
from function.quality.intervals import (
    Interval,
    paired_difference,
    psi,
    psi_level,
    unpaired_difference,
    wilson,
)
from function.quality.rollout import decide


def close(interval: Interval, low: float, high: float) -> bool:
    return interval.low == pytest.approx(low, abs=5e-4) and interval.high == pytest.approx(high, abs=5e-4)


def test_wilson_matches_newcombes_table():
    """Newcombe (1998), single proportion, method 3: 81/263 -> 0.2553-0.3662; 0/10 -> 0-0.2775."""
    assert close(wilson(81, 263), 0.2553, 0.3662)
    assert close(wilson(0, 10), 0.0, 0.2775)
    assert wilson(0, 0) is None


def test_unpaired_difference_matches_newcombes_example():
    """Newcombe (1998), independent proportions, method 10: 56/70 against 48/80 -> 0.0524 to 0.3339."""
    assert close(unpaired_difference(48, 80, 56, 70), 0.0524, 0.3339)


def test_paired_difference_uses_the_pairing():
    """The same two accuracies measured on the same images are known more tightly than on different ones when the
    images mostly agree; a tie is centred on 0 and never claims a difference."""
    paired = paired_difference(both=80, first_only=2, second_only=8, neither=10)
    unpaired = unpaired_difference(82, 100, 88, 100)
    assert paired.value == pytest.approx(unpaired.value) == pytest.approx(0.06)
    assert paired.high - paired.low < 0.75 * (unpaired.high - unpaired.low)
    clear = paired_difference(both=80, first_only=1, second_only=10, neither=9)
    assert clear.low > 0 > unpaired_difference(81, 100, 90, 100).low
    tie = paired_difference(40, 5, 5, 50)
    assert tie.value == 0 and tie.low < 0 < tie.high
    assert paired_difference(0, 0, 0, 0) is None


def test_psi_is_zero_for_the_same_mix_and_flags_a_shift():
    same = psi({"bream": 50, "perch": 30, "pike": 20}, {"bream": 500, "perch": 300, "pike": 200})
    assert same == pytest.approx(0) and psi_level(same) == "stable"
    shifted = psi({"bream": 50, "perch": 30, "pike": 20}, {"bream": 20, "perch": 30, "pike": 50})
    assert shifted > 0.25 and psi_level(shifted) == "act"
    assert psi_level(psi([100, 100], [120, 80])) == "stable" and psi([0, 0], [1, 2]) is None
    assert psi({"a": 10}, {"a": 5, "b": 5}) > 0.25  # a class the reference never saw


def comparison(difference: Interval | None, labelled: int = 200, kind: str = "shadow", p95: float = 10.0):
    stable = Side("1", None, 300, labelled, None, 5.0, 10.0)
    candidate = Side("2", None, 300, labelled, None, 5.0, p95)
    return Comparison(kind, stable, candidate, labelled, difference, agreement=0.99)


@pytest.mark.parametrize(
    ("difference", "labelled", "kind", "p95", "expected"),
    [
        (Interval(0.05, 0.01, 0.09), 200, "shadow", 10.0, "promote"),
        (Interval(0.05, 0.01, 0.09), 99, "shadow", 10.0, "hold"),  # too few labels, however clear
        (Interval(-0.05, -0.09, -0.01), 200, "shadow", 10.0, "rollback"),
        (Interval(0.0, -0.01, 0.01), 200, "shadow", 10.0, "promote"),  # within the 2% margin
        (Interval(0.0, -0.06, 0.06), 200, "shadow", 10.0, "hold"),  # not shown within the margin
        (Interval(0.05, 0.01, 0.09), 200, "revisions", 20.0, "hold"),  # a revision twice as slow at p95
        (
            Interval(0.05, 0.01, 0.09),
            200,
            "shadow",
            20.0,
            "promote",
        ),  # a shadow's one-thread latency: not judged
        (None, 0, "shadow", 10.0, "hold"),  # agreement 99%, no labels: never promoted on agreement alone
    ],
)
def test_the_rollout_rules(difference, labelled, kind, p95, expected):
    assert decide(comparison(difference, labelled, kind, p95)).decision == expected
