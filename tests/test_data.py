"""Data: the embedded corpus, the split, the Markov task's optimum, batches."""

import math

import pytest
import torch

from normcourse import data

torch.set_num_threads(1)


def test_python_docs_corpus_is_embedded_and_hashed():
    d = data.cached("python_docs")
    text = data.python_docs_text()
    assert len(text) > 100_000
    assert d.decode(d.train[:200]) == text[:200]
    assert len(d.train) + len(d.val) == len(text)
    assert d.decode(d.val[-50:]) == text[-50:]          # contiguous split: val is the tail
    assert len(d.sha256) == 64 and d.sha256 == data.python_docs().sha256


def test_user_text_file(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("hello world, hello norms\n" * 40, encoding="utf-8")
    d = data.load(str(f))
    assert d.vocab_size == len(set("hello world, hello norms\n"))
    assert d.decode(d.train[:11]) == "hello world"
    with pytest.raises(ValueError, match="python_docs"):
        data.load("no/such/file.txt")


def test_batches_are_shifted_and_reproducible():
    d = data.cached("python_docs")
    x, y = d.batch("train", 4, 16, torch.Generator().manual_seed(0))
    x2, y2 = d.batch("train", 4, 16, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_markov_chain_entropy_rate_is_the_empirical_optimum():
    d = data.markov_chain(vocab_size=6, n_tokens=60_000, concentration=0.5, seed=3)
    ids = torch.cat([d.train, d.val])
    # the empirical conditional entropy of the sample approaches the entropy rate
    counts = torch.zeros(6, 6, dtype=torch.float64)
    counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1, dtype=torch.float64), accumulate=True)
    P_hat = counts / counts.sum(1, keepdim=True)
    H_hat = -(counts * torch.log(P_hat.clamp_min(1e-300))).sum() / counts.sum()
    assert 0 < d.optimal_loss < math.log(6)
    assert H_hat.item() == pytest.approx(d.optimal_loss, abs=0.02)
    assert data.markov_chain(vocab_size=6, n_tokens=1000, seed=3).sha256 != \
        data.markov_chain(vocab_size=6, n_tokens=1000, seed=4).sha256
