"""The chapter-11 checkers: they accept right answers and name each typical mistake."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from checker_run import run

from normcourse.exercises.no_norm import check_adaln_zero, check_strip_layer_norms
from normcourse.model import TinyGPT
from normcourse.remove_norm import strip_layer_norms


# ---- AdaLN-Zero -------------------------------------------------------------

def adaln(x, shift, scale, gate, branch):
    h = F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + scale[:, None, :]) + shift[:, None, :]
    return x + gate[:, None, :] * branch(h)


def adaln_by_hand(x, shift, scale, gate, branch):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    h = (x - mu) / torch.sqrt(var + 1e-6)
    h = h * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)
    return x + gate.unsqueeze(1) * branch(h)


def adaln_default_eps(x, shift, scale, gate, branch):
    # nn.LayerNorm's default eps, 1e-5: the exercise asks for 1e-6
    h = F.layer_norm(x, x.shape[-1:]) * (1 + scale[:, None, :]) + shift[:, None, :]
    return x + gate[:, None, :] * branch(h)


def adaln_module(x, shift, scale, gate, branch):
    norm = nn.LayerNorm(x.shape[-1], elementwise_affine=False, eps=1e-6)
    return torch.addcmul(x, gate.unsqueeze(1), branch(torch.addcmul(shift.unsqueeze(1), norm(x),
                                                                      1 + scale.unsqueeze(1))))


@pytest.mark.parametrize("fn", [adaln, adaln_by_hand, adaln_module])
def test_check_adaln_zero_accepts_correct_implementations(fn, capsys):
    ok, out = run(check_adaln_zero, fn, capsys)
    assert ok, out
    assert "\u2714" in out


def _ln(x):
    return F.layer_norm(x, x.shape[-1:])


WRONG_ADALN = {
    "no_one_plus": (lambda x, sh, sc, g, b: x + g[:, None] * b(_ln(x) * sc[:, None] + sh[:, None]),
                    "not by (1 + scale)"),
    "swapped": (lambda x, sh, sc, g, b: x + g[:, None] * b(_ln(x) * (1 + sh[:, None]) + sc[:, None]),
                "shift and scale are swapped"),
    "no_gate": (lambda x, sh, sc, g, b: x + b(_ln(x) * (1 + sc[:, None]) + sh[:, None]),
                "the gate is not applied"),
    "gate_all": (lambda x, sh, sc, g, b: g[:, None] * (x + b(_ln(x) * (1 + sc[:, None]) + sh[:, None])),
                 "also scales the skip path"),
    "no_residual": (lambda x, sh, sc, g, b: g[:, None] * b(_ln(x) * (1 + sc[:, None]) + sh[:, None]),
                    "residual connection is missing"),
    "no_norm": (lambda x, sh, sc, g, b: x + g[:, None] * b(x * (1 + sc[:, None]) + sh[:, None]),
                "without being normalized"),
    "modulate_output": (lambda x, sh, sc, g, b: x + g[:, None] * (b(_ln(x)) * (1 + sc[:, None]) + sh[:, None]),
                        "output instead of its input"),
    "wrong_axis": (lambda x, sh, sc, g, b: x + g * b(_ln(x) * (1 + sc) + sh), None),  # fails or B==T
    "in_place": (lambda x, sh, sc, g, b: x.add_(g[:, None] * b(_ln(x) * (1 + sc[:, None]) + sh[:, None])),
                 "in place"),
    "default_eps": (adaln_default_eps, "eps = 1e-5"),
    "stub": (lambda x, sh, sc, g, b: (_ for _ in ()).throw(NotImplementedError), "not implemented yet"),
    "returns_none": (lambda x, sh, sc, g, b: None, "forget a `return`"),
}


@pytest.mark.parametrize("name", WRONG_ADALN)
def test_check_adaln_zero_rejects_wrong_implementations(name, capsys):
    fn, message = WRONG_ADALN[name]
    ok, out = run(check_adaln_zero, fn, capsys)
    assert not ok
    assert "\u2718" in out and "Hint:" in out
    if message:
        assert message in out, out


def test_wrong_axis_is_named_when_shapes_happen_to_broadcast(capsys):
    # only the B == T case broadcasts; make every call look like it
    def fn(x, sh, sc, g, b):
        if x.shape[0] != x.shape[1]:
            return adaln(x, sh, sc, g, b)
        return x + g[None] * b(_ln(x) * (1 + sc[None]) + sh[None])
    ok, out = run(check_adaln_zero, fn, capsys)
    assert not ok and "wrong axis" in out, out


# ---- strip LayerNorms ---------------------------------------------------------

def strip_by_walking(model):
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.LayerNorm):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, nn.Identity())
    return model


def strip_recursive_no_return(model):
    for name, child in model.named_children():
        if isinstance(child, nn.LayerNorm):
            setattr(model, name, nn.Identity())
        else:
            strip_recursive_no_return(child)


def strip_copy(model):
    return strip_layer_norms(copy.deepcopy(model))


@pytest.mark.parametrize("fn", [strip_by_walking, strip_recursive_no_return, strip_copy, strip_layer_norms])
def test_check_strip_layer_norms_accepts_correct_implementations(fn, capsys):
    ok, out = run(check_strip_layer_norms, fn, capsys)
    assert ok, out


def strip_blocks_only(model):
    for block in getattr(model, "blocks", []):
        block.norm_attn = nn.Identity()
        block.norm_mlp = nn.Identity()
    return model


def strip_top_level_only(model):
    for name, child in list(model.named_children()):
        if isinstance(child, nn.LayerNorm):
            setattr(model, name, nn.Identity())
    return model


def strip_reset_affine(model):
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def strip_fresh_model(model):
    if isinstance(model, TinyGPT):
        cfg = copy.deepcopy(model.config)
        cfg.norm = "identity"
        return TinyGPT(cfg)
    return strip_layer_norms(model)


class Affine(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x):
        return x * self.weight + self.bias


def strip_keep_affine(model):
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.LayerNorm):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, Affine(m))
    return model


def strip_everything_named_norm(model):
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.LayerNorm) or isinstance(m, nn.Linear) and name.endswith("c_fc"):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, nn.Identity())
    return model


def _strip_to(make):
    def strip(model):
        for name, m in list(model.named_modules()):
            if isinstance(m, nn.LayerNorm):
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, child, make())
        return model
    return strip


WRONG_STRIP = {
    "blocks_only": (strip_blocks_only, "are still there: norm_final"),
    "top_level_only": (strip_top_level_only, "are still there"),
    "reset_affine": (strip_reset_affine, "still divides by sigma"),
    "fresh_model": (strip_fresh_model, "trained weights"),
    "keep_affine": (strip_keep_affine, "should not have"),
    "too_much": (strip_everything_named_norm, "that are not LayerNorm's are gone"),
    "returns_int": (lambda model: 0, "return the model"),
    # the model's own forward pass fails: the learner's edit, not the checker's bug
    "to_none": (_strip_to(lambda: None), "by None"),
    "to_flatten": (_strip_to(nn.Flatten), "no longer runs after your function"),
    "to_softmax": (_strip_to(lambda: nn.Softmax(-1)), "computes something else"),
}


@pytest.mark.parametrize("name", WRONG_STRIP)
def test_check_strip_layer_norms_rejects_wrong_implementations(name, capsys):
    fn, message = WRONG_STRIP[name]
    ok, out = run(check_strip_layer_norms, fn, capsys)
    assert not ok
    assert "\u2718" in out and "Hint:" in out
    assert message in out, out
    assert "checker itself failed" not in out
