"""Checkers of chapters 8-9: what the attempts in tests/near_misses/ch08.py and ch09.py
do not cover (the near misses and right answers themselves live there)."""

import math

from normcourse.exercises import placements as pl


def test_checkers_need_a_function(capsys):
    assert not pl.check_pre_ln_block(None)
    assert "needs your function" in capsys.readouterr().out


def test_failed_margin_matches_the_reference():
    run_ = {"diverged": False, "val_loss": 3.0}
    assert pl.classify_run(run_, 3.0 + pl.FAILED_MARGIN / 2) == "failed"
    assert pl.classify_run(run_, 3.0 + 2 * pl.FAILED_MARGIN) == "trained"
    assert math.isclose(pl.FAILED_MARGIN, 0.1)
