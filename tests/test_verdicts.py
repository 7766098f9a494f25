"""The verdict rule: t quantiles, Welch intervals, and the words it allows."""

import math
import random

import pytest

from normcourse import verdicts
from normcourse.verdicts import BETTER, ONE_OBSERVATION, SAME, WORSE, agreement, compare


@pytest.mark.parametrize("dof, expected", [(1, 12.7062), (4, 2.7764), (9, 2.2622), (30, 2.0423)])
def test_t_quantile_matches_the_printed_table(dof, expected):
    assert verdicts.t_quantile(0.975, dof) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_tends_to_the_normal():
    assert verdicts.t_quantile(0.975, 1e6) == pytest.approx(1.95996, abs=1e-4)


def test_welch_interval_by_hand():
    a, b = [1.0, 1.1, 0.9, 1.05, 0.95], [1.3, 1.2, 1.4, 1.25, 1.35]
    c = compare(a, b)
    va = vb = 0.025 / 4 / 5  # sample variance / n; both samples deviate by 0, ±0.1, ±0.05
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 4)
    half = verdicts.t_quantile(0.975, dof) * se
    assert c.difference == pytest.approx(-0.3)
    assert (c.low, c.high) == pytest.approx((-0.3 - half, -0.3 + half))
    assert c.verdict == BETTER
    assert compare(a, b, lower_is_better=False).verdict == WORSE


def test_overlapping_seeds_give_no_verdict():
    assert compare([1, 1.1, 0.9, 1.05, 0.95], [1.0, 1.2, 0.8, 1.1, 0.9]).verdict == SAME


def test_too_few_seeds_is_one_observation():
    c = compare([1, 2, 3, 4], [5, 6, 7, 8, 9])
    assert c.verdict == ONE_OBSERVATION and math.isnan(c.low)
    assert "one observation" in str(c)


def test_interval_covers_the_truth_about_95_percent_of_the_time():
    rng = random.Random(0)
    hits = 0
    for _ in range(400):
        a = [rng.gauss(0.0, 1.0) for _ in range(5)]
        b = [rng.gauss(0.5, 2.0) for _ in range(7)]
        c = compare(a, b)
        hits += c.low <= -0.5 <= c.high
    assert 0.92 <= hits / 400 <= 0.98


def test_non_finite_losses_are_refused_by_name():
    with pytest.raises(ValueError, match="non-finite.*divergences"):
        compare([1, 2, 3, 4, float("nan")], [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="b must hold at least one value"):
        compare([1.0], [])


def test_agreement_with_a_paper():
    better = compare([1, 1.1, 0.9, 1.05, 0.95], [2, 2.1, 1.9, 2.05, 1.95])
    same = compare([1, 1.1, 0.9, 1.05, 0.95], [1.0, 1.2, 0.8, 1.1, 0.9])
    assert agreement(better, "better") == "agrees"
    assert agreement(better, "worse") == "disagrees"
    assert agreement(same, "better") == "inconclusive"
    assert agreement(same, "same") == "agrees"
    with pytest.raises(ValueError, match="paper_says must be"):
        agreement(better, "faster")
