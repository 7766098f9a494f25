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


# ------------------------------------------------------------ bad input fails early and clearly

@pytest.mark.parametrize("fraction", [1.5, -0.5, 0.0, 1.0, float("nan")])
def test_val_fraction_outside_0_1_is_an_error(fraction):
    # before: 1.5 gave overlapping splits, -0.5 an empty validation split, silently
    with pytest.raises(ValueError, match="val_fraction must be a finite number > 0 and < 1"):
        data.text_data("abcdefghij" * 10, val_fraction=fraction)
    with pytest.raises(ValueError, match="val_fraction must be a finite number > 0 and < 1"):
        data.markov_chain(vocab_size=4, n_tokens=1000, val_fraction=fraction)


def test_each_split_needs_tokens():
    with pytest.raises(ValueError, match="1 validation tokens, and each split needs at least 2"):
        data.text_data("abcdefghij", val_fraction=0.1)
    with pytest.raises(ValueError, match="text is empty"):
        data.text_data("")
    d = data.text_data("abcdefghij" * 2, val_fraction=0.1)    # 18 + 2: enough
    assert (len(d.train), len(d.val)) == (18, 2)


@pytest.mark.parametrize("concentration", [0, -1, float("nan")])
def test_markov_concentration_must_be_positive(concentration):
    # before: accepted, and the chain's "optimal loss" was ln V whatever the value
    with pytest.raises(ValueError, match="concentration must be a finite number > 0"):
        data.markov_chain(vocab_size=4, n_tokens=100, concentration=concentration)


def test_markov_sizes_are_checked():
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 1"):
        data.markov_chain(vocab_size=0, n_tokens=100)
    with pytest.raises(TypeError, match="n_tokens must be an integer"):
        data.markov_chain(vocab_size=4, n_tokens=100.0)


def test_file_problems_name_the_file(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=r"nope\.txt' does not exist"):
        data.load_text_file(missing)
    with pytest.raises(ValueError, match=r"no file .*nope\.txt' exists"):
        data.load(str(missing))
    with pytest.raises(ValueError, match="not a regular file"):
        data.load(str(tmp_path))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.txt' is empty"):
        data.load_text_file(empty)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café au lait\n".encode("latin-1") * 20)
    with pytest.raises(ValueError, match=r"latin1\.txt' is not UTF-8 text.*must be UTF-8 text"):
        data.load(str(latin))


def test_batch_split_name_is_checked():
    d = data.markov_chain(vocab_size=4, n_tokens=1000)
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        d.batch("validation", 2, 8, torch.Generator().manual_seed(0))
