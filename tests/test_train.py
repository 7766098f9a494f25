"""Training: schedule, spike rule, divergence handling, bit-reproducibility."""

import math

import pytest
import torch

from normcourse import data
from normcourse.model import GPTConfig, TinyGPT
from normcourse.train import TrainConfig, count_spikes, evaluate, lr_at, train, unigram_loss

torch.set_num_threads(1)


def small(placement="pre", **kw):
    d = data.cached("python_docs")
    return GPTConfig(vocab_size=d.vocab_size, block_size=16, n_layer=2, n_head=2,
                     d_model=32, placement=placement, **kw)


def test_schedule_warmup_then_cosine():
    tc = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, tc) == pytest.approx(0.1)
    assert lr_at(9, tc) == pytest.approx(1.0)
    assert lr_at(55, tc) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(100, tc) == pytest.approx(0.1)
    assert all(lr_at(s, tc) >= lr_at(s + 1, tc) for s in range(10, 99))


def test_spike_rule():
    flat = [2.0] * 30
    assert count_spikes(flat) == 0
    one = flat[:25] + [3.0, 3.0, 3.0] + flat[:5]       # a 3-step spike counts once
    assert count_spikes(one) == 1
    two = flat[:25] + [3.0] + flat[:10] + [2.6] + flat[:3]
    assert count_spikes(two) == 2
    assert count_spikes(flat[:25] + [2.3]) == 0        # below 1.2 x median


def test_training_learns_and_records_history():
    tc = TrainConfig(steps=30, batch_size=8, lr=3e-3, warmup_steps=5, threads=1)
    r = train(small(), tc, progress=False)
    h = r.history
    assert not r.diverged and r.diverged_at is None
    assert len(h["loss"]) == len(h["lr"]) == len(h["grad_norm"]) == 30
    assert len(h["layer_grad_norm"][0]) == len(h["layer_rms"][0]) == 2
    assert sum(h["loss"][-5:]) / 5 < h["loss"][0] - 0.5
    assert r.val_loss is not None and math.isfinite(r.val_loss)
    assert r.corpus_sha256 == data.cached("python_docs").sha256
    # recorded per-layer grad norms combine to the global (pre-clip) norm minus embeddings
    g = h["layer_grad_norm"][3]
    assert math.sqrt(sum(v * v for v in g)) <= h["grad_norm"][3] + 1e-6


def test_bit_reproducible_for_fixed_seed_and_threads():
    tc = TrainConfig(steps=12, batch_size=4, lr=3e-3, warmup_steps=2, threads=1, seed=7)
    a = train(small("post"), tc, progress=False)
    b = train(small("post"), tc, progress=False)
    assert a.history == b.history and a.val_loss == b.val_loss
    c = train(small("post"), TrainConfig(**{**tc.to_dict(), "seed": 8}), progress=False)
    assert c.history["loss"] != a.history["loss"]


def test_nan_weights_stop_the_run_cleanly():
    mc = small()
    torch.manual_seed(0)
    m = TinyGPT(mc)
    with torch.no_grad():
        m.blocks[0].mlp.c_fc.weight[0, 0] = float("nan")
    r = train(mc, TrainConfig(steps=10, batch_size=4, threads=1), model=m, progress=False)
    assert r.diverged and r.diverged_at == 0 and r.val_loss is None
    assert r.history["loss"] == []


def test_exploding_loss_stops_the_run():
    # no clipping, no warmup, an absurd learning rate, no norms: the loss leaves 2 ln V
    tc = TrainConfig(steps=60, batch_size=4, lr=3.0, warmup_steps=0, grad_clip=None, threads=1)
    r = train(small("none", scaled_residual_init=False), tc, progress=False)
    assert r.diverged and 0 < r.diverged_at < 60
    assert len(r.history["loss"]) == r.diverged_at
    assert all(math.isfinite(v) for v in r.history["loss"])


def test_vocab_mismatch_is_an_error():
    with pytest.raises(ValueError, match="vocab_size"):
        train(GPTConfig(vocab_size=7), TrainConfig(steps=1), progress=False)


class _FrequencyModel(torch.nn.Module):
    """Predicts every character from its training-set frequency: logits = log p."""

    def __init__(self, corpus):
        super().__init__()
        freq = torch.bincount(corpus.train, minlength=corpus.vocab_size).double()
        self.log_p = torch.log(freq / freq.sum()).float()

    def forward(self, idx, targets):
        logits = self.log_p.expand(*idx.shape, -1)
        return logits, torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                         targets.reshape(-1))


def test_unigram_loss_is_what_evaluate_gives_a_frequency_model():
    corpus = data.cached("python_docs")
    tc = TrainConfig()
    expected = evaluate(_FrequencyModel(corpus), corpus, tc, block_size=32)
    got = unigram_loss(corpus, tc, block_size=32)
    assert got == pytest.approx(expected, rel=1e-5)
    assert 0 < got < math.log(corpus.vocab_size)   # better than uniform, worse than perfect


# ------------------------------------------------------------ bad input fails before training

@pytest.mark.parametrize("field, value, error, message", [
    ("steps", 0, ValueError, "steps must be an integer >= 1"),
    ("steps", -5, ValueError, "steps must be an integer >= 1"),
    ("batch_size", 0, ValueError, "batch_size must be an integer >= 1"),
    ("batch_size", 2.0, TypeError, "batch_size must be an integer >= 1"),
    ("lr", 0.0, ValueError, "lr must be a finite number > 0"),
    ("lr", -1e-3, ValueError, "lr must be a finite number > 0"),
    ("lr", float("nan"), ValueError, "lr must be a finite number > 0"),
    ("warmup_steps", -3, ValueError, "warmup_steps must be an integer >= 0"),
    ("eval_batches", 0, ValueError, "eval_batches must be an integer >= 1"),
    ("eval_interval", -1, ValueError, "eval_interval must be an integer >= 0"),
    ("spike_window", 0, ValueError, "spike_window must be an integer >= 1"),
    ("threads", 0, ValueError, "threads .* must be an integer >= 1"),
    ("threads", -1, ValueError, "threads .* must be an integer >= 1"),
    ("grad_clip", 0.0, ValueError, r"grad_clip \(None: no clipping\) must be a finite number > 0"),
    ("grad_clip", -1.0, ValueError, r"grad_clip \(None: no clipping\) must be a finite number > 0"),
    ("weight_decay", -1.0, ValueError, "weight_decay must be a finite number >= 0"),
    ("beta1", 1.5, ValueError, "beta1 must be a finite number >= 0 and < 1"),
    ("beta2", 1.0, ValueError, "beta2 must be a finite number >= 0 and < 1"),
    ("min_lr_ratio", 2.0, ValueError, "min_lr_ratio must be a finite number >= 0 and <= 1"),
    ("diverge_loss", 0.0, ValueError, "diverge_loss .* must be a number > 0"),
    ("spike_ratio", float("nan"), ValueError, "spike_ratio must be a finite number > 0"),
    ("device", "gpu", ValueError, "device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    ("data", 3, TypeError, "data must be 'python_docs', 'markov' or a path"),
])
def test_train_config_rejects_bad_fields_naming_them(field, value, error, message):
    with pytest.raises(error, match=message):
        TrainConfig(**{field: value})


def test_train_config_accepts_its_conventions():
    TrainConfig(grad_clip=None, threads=None, diverge_loss=None, warmup_steps=0, eval_interval=0)
    TrainConfig(diverge_loss=float("inf"), min_lr_ratio=1.0, weight_decay=0.0, beta1=0.0)
    assert TrainConfig().to_dict()["grad_clip"] == 1.0     # defaults unchanged


def test_cuda_when_absent_is_an_error_at_config_time():
    if torch.cuda.is_available():
        TrainConfig(device="cuda")
        with pytest.raises(ValueError, match="CUDA device"):
            TrainConfig(device=f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match=r"TrainConfig.device='cuda' is not available.*is_available"):
            TrainConfig(device="cuda")


def test_train_checks_its_arguments_before_training():
    with pytest.raises(TypeError, match="train_config must be a TrainConfig"):
        train(small(), {"steps": 2}, progress=False)
    with pytest.raises(TypeError, match="model_config must be a GPTConfig"):
        train({"vocab_size": 7}, TrainConfig(steps=1), progress=False)
    tc = TrainConfig(steps=1)
    tc.steps = 0     # changed after it was made: checked again
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        train(small(), tc, progress=False)


def _text_file(tmp_path, text, name="t.txt"):
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return f


def test_user_file_problems_are_clear_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"no file .*nope\.txt.* exists"):
        train(small(), TrainConfig(steps=1, data=str(tmp_path / "nope.txt")), progress=False)
    empty = _text_file(tmp_path, "", "empty.txt")
    with pytest.raises(ValueError, match=r"empty\.txt.* is empty"):
        train(small(), TrainConfig(steps=1, data=str(empty)), progress=False)
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(ValueError, match=r"b\.txt.* is not UTF-8 text"):
        train(small(), TrainConfig(steps=1, data=str(binary)), progress=False)


def test_splits_shorter_than_block_size_fail_before_training(tmp_path):
    text = "hello world, this is a small text file for testing\n"   # 51 chars: 46 train, 5 val
    f = _text_file(tmp_path, text)
    d = data.load(str(f))
    mc = GPTConfig(vocab_size=d.vocab_size, block_size=64, n_layer=1, n_head=2, d_model=8)
    with pytest.raises(ValueError, match=r"train split .* has 46 tokens but block_size=64"):
        train(mc, TrainConfig(steps=1, data=str(f)), progress=False)
    # the validation split used to fail only at the final evaluation, after all the training
    mc = GPTConfig(vocab_size=d.vocab_size, block_size=8, n_layer=1, n_head=2, d_model=8)
    with pytest.raises(ValueError, match=r"validation split .* has 5 tokens but block_size=8"):
        train(mc, TrainConfig(steps=1, data=str(f)), progress=False)
