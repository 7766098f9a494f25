"""The two reproduction rules of tests/cache_compare.py, on made-up runs."""

import pytest

from cache_compare import EARLY_STEPS, assert_reproduces, same_machine

from normcourse.experiments.cache import environment, numerics_fingerprint


def _run(**result):
    base = {"diverged": False, "diverged_at": None, "spikes": 0, "init": {"loss": 4.17, "layer_rms": [1.0, 1.5]},
            "loss": [4.0 - 0.01 * i for i in range(40)], "final_train_loss": 3.6, "trained": {"loss": 3.61, "layer_rms": [2.0] * 12}}
    base.update(result)
    return base


def test_new_runs_carry_this_machines_fingerprint():
    env = environment("cpu")
    assert env["numerics"] == numerics_fingerprint("cpu")
    assert same_machine({"env": env}) and not same_machine({"env": {"torch": "2.13.0"}})


def test_same_machine_is_strict():
    entry = {"env": environment("cpu"), "result": _run()}
    assert_reproduces(entry, _run())
    with pytest.raises(AssertionError, match="final_train_loss"):
        assert_reproduces(entry, _run(final_train_loss=3.6 * (1 + 1e-4)))


def test_another_machine_compares_the_start_and_the_verdict():
    entry = {"env": {}, "result": _run()}
    late_drift = _run(final_train_loss=3.7, trained={"loss": 3.5, "layer_rms": [9.0] * 12}, spikes=2,
                      loss=[4.0 - 0.01 * i for i in range(EARLY_STEPS)] + [9.0] * (40 - EARLY_STEPS))
    assert_reproduces(entry, late_drift)  # after the first steps, trajectories may part
    with pytest.raises(AssertionError, match=r"loss\[1\]"):
        assert_reproduces(entry, _run(loss=[4.0, 3.9]  + [4.0 - 0.01 * i for i in range(2, 40)]))
    with pytest.raises(AssertionError, match="init.layer_rms"):
        assert_reproduces(entry, _run(init={"loss": 4.17, "layer_rms": [1.0, 1.51]}))
    with pytest.raises(AssertionError, match="diverged"):
        assert_reproduces(entry, _run(diverged=True))
