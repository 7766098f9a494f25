"""Each vmapped seed equals its own sequential run; diverging seeds are frozen alone."""

import time

import pytest
import torch

from normcourse import data
from normcourse.model import GPTConfig
from normcourse.multiseed import train_seeds
from normcourse.train import TrainConfig, train


def cfg(placement="pre"):
    d = data.cached("python_docs")
    return GPTConfig(vocab_size=d.vocab_size, block_size=16, n_layer=2, n_head=2,
                     d_model=32, placement=placement)


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_each_seed_equals_its_sequential_run(placement):
    tc = TrainConfig(steps=15, batch_size=4, lr=3e-3, warmup_steps=3, threads=1)
    batched = train_seeds(cfg(placement), tc, seeds=[0, 1, 2], progress=False)
    for s, r in zip([0, 1, 2], batched):
        ref = train(cfg(placement), TrainConfig(**{**tc.to_dict(), "seed": s}), progress=False)
        assert r.history["lr"] == ref.history["lr"]
        torch.testing.assert_close(torch.tensor(r.history["loss"]), torch.tensor(ref.history["loss"]),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.tensor(r.history["grad_norm"]),
                                   torch.tensor(ref.history["grad_norm"]), rtol=1e-4, atol=1e-6)
        assert r.val_loss == pytest.approx(ref.val_loss, rel=1e-5)
    assert batched[0].history["loss"] != batched[1].history["loss"]


def test_a_diverging_seed_is_frozen_and_the_others_go_on():
    # pick a loss limit that one seed crosses and the other does not
    tc = TrainConfig(steps=8, batch_size=4, lr=3e-3, warmup_steps=0, threads=1, diverge_loss=1e9)
    free = train_seeds(cfg(), tc, seeds=[0, 1, 2], progress=False)
    peaks = sorted((max(r.history["loss"]), i) for i, r in enumerate(free))
    (low, _), (high, hot) = peaks[0], peaks[-1]
    tc.diverge_loss = (low + high) / 2
    rs = train_seeds(cfg(), tc, seeds=[0, 1, 2], progress=False)
    assert rs[hot].diverged and not rs[peaks[0][1]].diverged
    for s, r in zip([0, 1, 2], rs):
        ref = train(cfg(), TrainConfig(**{**tc.to_dict(), "seed": s}), progress=False)
        assert (r.diverged, r.diverged_at) == (ref.diverged, ref.diverged_at)
        torch.testing.assert_close(torch.tensor(r.history["loss"]), torch.tensor(ref.history["loss"]),
                                   rtol=1e-5, atol=1e-5)


def benchmark(S=4, steps=30, **model):
    """Seconds for S seeds batched vs one after another (``python tests/test_multiseed.py``)."""
    d = data.cached("python_docs")
    mc = GPTConfig(vocab_size=d.vocab_size, **{"block_size": 64, "n_layer": 4, "n_head": 4,
                                               "d_model": 64, **model})
    tc = TrainConfig(steps=steps, batch_size=16, threads=1)
    train_seeds(mc, TrainConfig(steps=2, threads=1), range(S), progress=False)  # warm up
    t = time.perf_counter()
    train_seeds(mc, tc, range(S), progress=False)
    batched = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(S):
        train(mc, TrainConfig(**{**tc.to_dict(), "seed": s}), progress=False)
    return batched, time.perf_counter() - t


if __name__ == "__main__":
    for size in ({"d_model": 32, "n_layer": 2, "block_size": 16}, {}):
        b, q = benchmark(**size)
        print(size or "L=4 d=64 T=64", f"4 seeds x 30 steps: batched {b:.2f}s, sequential {q:.2f}s")
