"""normcourse.ablations: hidden states, adjacent cosines and layer-skip losses agree with the model."""

import pytest
import torch
import torch.nn.functional as F

from normcourse import ablations
from normcourse.data import cached
from normcourse.model import GPTConfig, TinyGPT
from normcourse.train import validation_batches


@pytest.fixture(scope="module")
def setup():
    d = cached("python_docs")
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=d.vocab_size, n_layer=3, d_model=32, block_size=16,
                              init_std=0.2, scaled_residual_init=False)).eval()
    x, y = d.batch("val", 4, 16, torch.Generator().manual_seed(0))
    return d, model, x, y


def test_residual_streams_end_at_the_model_output(setup):
    _, model, x, y = setup
    hs = ablations.residual_streams(model, x)
    assert len(hs) == len(model.blocks) + 1
    logits = model.lm_head(model.norm_final(hs[-1]))
    assert torch.allclose(logits, model(x)[0], atol=1e-5)


def test_loss_without_skips_is_the_model_loss(setup):
    _, model, x, y = setup
    assert ablations.loss_skipping(model, x, y) == pytest.approx(model(x, y)[1].item(), rel=1e-6)


def test_skipping_a_block_equals_a_model_without_it(setup):
    _, model, x, y = setup
    short = TinyGPT(GPTConfig(**{**model.config.to_dict(), "n_layer": 3})).eval()
    short.load_state_dict(model.state_dict())
    short.blocks = torch.nn.ModuleList([model.blocks[0], model.blocks[2]])
    assert ablations.loss_skipping(model, x, y, skip=(1,)) == pytest.approx(short(x, y)[1].item(), rel=1e-6)
    assert ablations.loss_skipping(model, x, y, skip=(1,)) != pytest.approx(model(x, y)[1].item(), rel=1e-4)


def test_adjacent_cosine_per_position():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, -3.0]])
    c = ablations.adjacent_cosine([a, b, b])
    assert c == pytest.approx([(2 ** -0.5 - 1) / 2, 1.0])
    hs = [torch.randn(2, 5, 8) for _ in range(4)]
    assert ablations.adjacent_cosine(hs) == pytest.approx(
        [F.cosine_similarity(p, q, dim=-1).mean().item() for p, q in zip(hs, hs[1:])], rel=1e-6)


def test_depth_report_shapes_and_consistency(setup):
    d, model, x, y = setup
    model.train()
    rep = ablations.depth_report(model, d, batch_size=4, block_size=16, n_batches=2)
    assert model.training, "the report must restore train mode"
    assert len(rep["skip_delta"]) == len(rep["adjacent_cosine"]) == 3
    assert len(rep["stream_rms"]) == 4
    batches = validation_batches(d, 4, 16, 2)
    base = sum(ablations.loss_skipping(model, bx, by) for bx, by in batches) / 2
    assert rep["loss"] == pytest.approx(base, rel=1e-6)
    assert all(-1 <= c <= 1 for c in rep["adjacent_cosine"])
    assert rep == ablations.depth_report(model, d, batch_size=4, block_size=16, n_batches=2)
