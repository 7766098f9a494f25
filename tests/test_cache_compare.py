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


def test_another_machine_compares_the_first_half_of_a_diverged_run():
    loss = [4.0, 3.9, 3.8, 5.0, 9.0, 30.0]            # diverged at step 6
    entry = {"env": {}, "result": _run(diverged=True, diverged_at=6, loss=loss)}
    assert_reproduces(entry, _run(diverged=True, diverged_at=6, loss=loss[:3] + [5.1, 9.5, 33.0]))
    with pytest.raises(AssertionError, match=r"loss\[2\]"):
        assert_reproduces(entry, _run(diverged=True, diverged_at=6,
                                      loss=[4.0, 3.9, 3.81, 5.0, 9.0, 30.0]))


def test_another_machine_compares_only_step_0_at_a_high_learning_rate():
    stored = _run()
    entry = {"env": {}, "spec": {"train": {"lr": 0.3}}, "result": stored}
    parted = _run(loss=[4.0] + [4.5 - 0.01 * i for i in range(1, 40)])
    assert_reproduces(entry, parted)                   # Adam's first steps amplify at lr 0.3
    with pytest.raises(AssertionError, match=r"loss\[0\]"):
        assert_reproduces(entry, _run(loss=[4.01] + stored["loss"][1:]))
    with pytest.raises(AssertionError, match=r"loss\[1\]"):  # at a low lr the first steps count
        assert_reproduces({**entry, "spec": {"train": {"lr": 1e-3}}}, parted)
