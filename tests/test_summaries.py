"""normcourse.summaries: the mean, running mean and row filter the chapters share."""

import pytest

from normcourse.summaries import mean, smooth, val_losses

ROWS = [
    {"norm": "dyt", "lr": 1e-3, "seed": 0, "val_loss": 3.0},
    {"norm": "dyt", "lr": 1e-3, "seed": 1, "val_loss": 3.5},
    {"norm": "layernorm", "lr": 1e-3, "seed": 0, "val_loss": 2.0},
    {"norm": "dyt", "lr": 3e-3, "seed": 0, "val_loss": 2.5},
]


def test_mean():
    assert mean([1.0, 2.0, 6.0]) == 3.0
    assert mean((4,)) == 4


def test_mean_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        mean([])


def test_smooth_is_the_running_mean_of_the_last_k():
    assert smooth([1.0, 3.0, 5.0, 7.0], k=2) == [1.0, 2.0, 4.0, 6.0]
    # the first k - 1 steps average over the steps there are
    assert smooth([3.0, 6.0, 9.0, 0.0], k=3) == [3.0, 4.5, 6.0, 5.0]


def test_smooth_default_window_is_20_steps():
    values = [float(i) for i in range(40)]
    out = smooth(values)
    assert len(out) == 40
    assert out[0] == 0.0
    assert out[39] == mean(values[20:])
    assert out[19] == mean(values[:20])


def test_smooth_with_window_one_is_the_identity():
    assert smooth([2.0, -1.0, 5.0], k=1) == [2.0, -1.0, 5.0]


def test_smooth_rejects_an_empty_window():
    with pytest.raises(ValueError, match="k must be >= 1"):
        smooth([1.0], k=0)


def test_val_losses_filters_on_every_field_in_row_order():
    assert val_losses(ROWS, norm="dyt", lr=1e-3) == [3.0, 3.5]
    assert val_losses(ROWS, norm="dyt", lr=1e-3, seed=1) == [3.5]
    assert val_losses(ROWS, lr=1e-3) == [3.0, 3.5, 2.0]
    assert val_losses(ROWS) == [3.0, 3.5, 2.0, 2.5]


def test_val_losses_a_missing_field_does_not_match():
    assert val_losses(ROWS, dyt_alpha=0.5) == []
    assert val_losses(ROWS, norm="rmsnorm") == []


def test_a_diverged_run_scores_its_initial_loss():
    rows = [{"norm": "dyt", "diverged": True, "val_loss": None, "loss": [4.2, 9.9]},
            {"norm": "dyt", "diverged": False, "val_loss": 2.5, "loss": [4.1, 2.6]}]
    assert val_losses(rows, norm="dyt") == [4.2, 2.5]


def test_mean_of_a_generator():
    assert mean(x * x for x in (1, 2, 3)) == 14 / 3
