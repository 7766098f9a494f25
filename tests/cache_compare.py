"""Comparing a re-run experiment with the numbers stored in the results cache.

Two rules, chosen by the machine the stored run came from:

- **Same machine** (the run's ``env["numerics"]`` fingerprint equals this
  machine's: processor, kernel family, torch version, threads): every number
  must reproduce to ``rel=1e-5``.
- **Another machine** (or a run stored before fingerprints were recorded):
  BLAS sums in another order there, and training amplifies that last-bit
  difference step by step: on the reference machines, stable runs drifted by
  up to 6e-4 (relative) by the end, and spiking or diverging runs by 2e-2 on
  the loss and by 10x on late gradient norms.  So only what precedes the
  amplification is compared: everything measured at initialization
  (``init``) and the first :data:`EARLY_STEPS` entries of every per-step curve,
  to ``rel=1e-3`` (what was measured on the trained model is left out; the
  largest drift seen there was 2e-4), and whether the run diverged.  A run
  that diverged amplifies faster on its way out: only the first half of its
  curves is compared (an E13Q run at lr 0.3 that diverged at step 6 drifted
  by 1.6e-3 at step 5 between an Intel and an AMD CPU, by 5e-5 before step 4).
  At a learning rate of :data:`HIGH_LR` or more, Adam's first updates (about
  lr times the sign of each gradient entry) turn last-bit differences in tiny
  gradient entries into large steps at once (an E13Q run at lr 0.3 drifted by
  10% in its gradient norm at step 4): there only step 0, computed before any
  update, is compared.  A change to the model, the data, the initialization, the loss or
  the optimizer shows at the first steps, so this still catches regressions.
"""

import math

import pytest

from normcourse.experiments.cache import numerics_fingerprint

EARLY_STEPS = 10
CROSS_MACHINE_REL = 1e-3
HIGH_LR = 0.1
# counts that follow the trajectory, so they may differ where the trajectory does
TRAJECTORY_COUNTS = ("diverged_at", "spikes")
# measured on the trained model: the end of the trajectory
AFTER_TRAINING = ("trained", "trained_layer_rms")


def assert_same_results(stored, recomputed, path="result", rel=1e-5, abs=1e-7):
    """Recursively compare stored and recomputed results: floats to ``rel``/``abs``, the rest exactly."""
    if isinstance(stored, dict):
        assert set(stored) == set(recomputed), path
        for k in stored:
            assert_same_results(stored[k], recomputed[k], f"{path}.{k}", rel, abs)
    elif isinstance(stored, list):
        assert len(stored) == len(recomputed), path
        for i, (x, y) in enumerate(zip(stored, recomputed)):
            assert_same_results(x, y, f"{path}[{i}]", rel, abs)
    elif isinstance(stored, float):
        assert recomputed == pytest.approx(stored, rel=rel, abs=abs, nan_ok=True), path
    else:
        assert stored == recomputed, path


def same_machine(entry: dict) -> bool:
    """Whether a stored run was computed on a machine whose numerics equal this one's."""
    return entry.get("env", {}).get("numerics") == numerics_fingerprint("cpu")


def assert_reproduces(entry: dict, recomputed: dict, abs: float = 1e-7):
    """A stored run's result against a re-run of its spec, by the rule of this module."""
    if same_machine(entry):
        assert_same_results(entry["result"], recomputed, abs=abs)
    else:
        lr = entry.get("spec", {}).get("train", {}).get("lr", 0.0)
        _assert_same_start(entry["result"], recomputed, "result",
                           early_steps=1 if lr >= HIGH_LR else EARLY_STEPS)


def _assert_same_start(stored, recomputed, path, before_training=False, diverged=False,
                       early_steps=EARLY_STEPS):
    if isinstance(stored, dict):
        assert set(stored) == set(recomputed), path
        diverged = diverged or stored.get("diverged") is True
        for k in stored:
            if k not in TRAJECTORY_COUNTS and k not in AFTER_TRAINING:
                _assert_same_start(stored[k], recomputed[k], f"{path}.{k}",
                                   before_training or k == "init", diverged, early_steps)
    elif isinstance(stored, list) and stored and all(isinstance(v, float) for v in stored):
        assert len(stored) == len(recomputed), path
        keep = (len(stored) if before_training else
                min(early_steps, max(1, len(stored) // 2)) if diverged else early_steps)
        for i, (x, y) in enumerate(zip(stored[:keep], recomputed[:keep])):
            _assert_float(x, y, f"{path}[{i}]")
    elif isinstance(stored, float):
        if before_training:
            _assert_float(stored, recomputed, path)
    elif isinstance(stored, list):
        assert len(stored) == len(recomputed), path
        for i, (x, y) in enumerate(zip(stored, recomputed)):
            _assert_same_start(x, y, f"{path}[{i}]", before_training, diverged, early_steps)
    else:
        assert stored == recomputed, path


def _assert_float(stored, recomputed, path):
    if isinstance(stored, float) and math.isnan(stored):
        assert math.isnan(recomputed), path
    else:
        assert recomputed == pytest.approx(stored, rel=CROSS_MACHINE_REL, abs=1e-6), path
