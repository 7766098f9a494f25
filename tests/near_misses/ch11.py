"""Chapter 11, "Life without normalization": AdaLN-Zero, and a model's LayerNorms stripped."""

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from near_misses import Attempt, Exercise, attempts
from normcourse.exercises.no_norm import check_adaln_zero, check_strip_layer_norms
from normcourse.model import TinyGPT
from normcourse.remove_norm import strip_layer_norms

NOTEBOOK = "notebooks/11_life_without_normalization.ipynb"


# ------------------------------------------------------------------ AdaLN-Zero

def _adaln(x, shift, scale, gate, branch, norm=None, mod=None):
    """F.layer_norm with eps=1e-6"""
    h = (norm or (lambda t: F.layer_norm(t, t.shape[-1:], eps=1e-6)))(x)
    h = h * (1 + scale[:, None, :]) + shift[:, None, :] if mod is None else mod(h)
    return x + gate[:, None, :] * branch(h)


def _by_hand(x, shift, scale, gate, branch):
    """by hand, var_mean and addcmul"""
    var, mean = torch.var_mean(x, dim=-1, keepdim=True, unbiased=False)
    h = (x - mean) * torch.rsqrt(var + 1e-6)
    return x + gate.unsqueeze(1) * branch(torch.addcmul(shift.unsqueeze(1), h, 1 + scale.unsqueeze(1)))


def _module(x, shift, scale, gate, branch):
    """nn.LayerNorm(eps=1e-6, elementwise_affine=False), view"""
    norm = nn.LayerNorm(x.shape[-1], eps=1e-6, elementwise_affine=False)
    b, c = shift.shape
    return x + gate.view(b, 1, c) * branch(norm(x) * (1 + scale.view(b, 1, c)) + shift.view(b, 1, c))


def _in_float64(x, shift, scale, gate, branch):
    """in float64, cast back"""
    return _adaln(*(t.double() for t in (x, shift, scale, gate)), branch).to(x.dtype)


def _loop_over_samples(x, shift, scale, gate, branch):
    """a loop over the samples"""
    h = torch.stack([F.layer_norm(x[i], x.shape[-1:], eps=1e-6) * (1 + scale[i]) + shift[i]
                     for i in range(x.shape[0])])
    return x + gate[:, None, :] * branch(h)


def _ln_with(eps=1e-6, unbiased=False, outside=False, dims=(-1,)):
    def norm(x):
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
        return (x - mean) / (var.sqrt() + eps) if outside else (x - mean) / torch.sqrt(var + eps)
    return norm


def _adaln_in_place(x, shift, scale, gate, branch):
    scale.add_(1)                                        # changes the caller's tensor
    return x + gate[:, None, :] * branch(F.layer_norm(x, x.shape[-1:], eps=1e-6) * scale[:, None, :]
                                         + shift[:, None, :])


def _unsqueeze_in_place(x, shift, scale, gate, branch):
    shift, scale, gate = shift.unsqueeze_(1), scale.unsqueeze_(1), gate.unsqueeze_(1)
    return x + gate * branch(F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + scale) + shift)


def _wrong_axis(x, sh, sc, g, b):
    return x + g[None] * b(F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + sc[None]) + sh[None])


def _m(expr):
    """An AdaLN variant: expr(x, shift, scale, gate, branch, ln) with shift etc. of shape (B, 1, C)."""
    def fn(x, shift, scale, gate, branch):
        ln = lambda t: F.layer_norm(t, t.shape[-1:], eps=1e-6)   # noqa: E731
        return expr(x, shift[:, None, :], scale[:, None, :], gate[:, None, :], branch, ln)
    return fn


def _wrong_axis_where_it_broadcasts(x, sh, sc, g, b):
    # right unless B == T, the one case where the wrong broadcast runs
    if x.shape[0] != x.shape[1]:
        return _adaln(x, sh, sc, g, b)
    return _wrong_axis(x, sh, sc, g, b)


def _stub(*args):
    raise NotImplementedError


ADALN_NEAR_MISSES = (
    Attempt("wrong axis only where shapes broadcast", _wrong_axis_where_it_broadcasts,
            ("wrong axis",)),
    Attempt("the stub", _stub, ("not implemented yet",)),
    Attempt("returns None", lambda *a: None, ("forget a `return`",)),
    Attempt("scale without 1 +", _m(lambda x, sh, sc, g, b, ln: x + g * b(ln(x) * sc + sh)),
            ("(1 + scale)",)),
    Attempt("1 - scale", _m(lambda x, sh, sc, g, b, ln: x + g * b(ln(x) * (1 - sc) + sh)), ("(1 - scale)",)),
    Attempt("minus shift", _m(lambda x, sh, sc, g, b, ln: x + g * b(ln(x) * (1 + sc) - sh)),
            ("shift is subtracted",)),
    Attempt("shift and scale swapped", _m(lambda x, sh, sc, g, b, ln: x + g * b(ln(x) * (1 + sh) + sc)),
            ("swapped",)),
    Attempt("no gate", _m(lambda x, sh, sc, g, b, ln: x + b(ln(x) * (1 + sc) + sh)),
            ("gate is not applied",)),
    Attempt("(1 + gate)", _m(lambda x, sh, sc, g, b, ln: x + (1 + g) * b(ln(x) * (1 + sc) + sh)),
            ("(1 + gate)",)),
    Attempt("gate on the skip too", _m(lambda x, sh, sc, g, b, ln: g * (x + b(ln(x) * (1 + sc) + sh))),
            ("scales the skip path",)),
    Attempt("no residual", _m(lambda x, sh, sc, g, b, ln: g * b(ln(x) * (1 + sc) + sh)),
            ("residual connection is missing",)),
    Attempt("branch forgotten", _m(lambda x, sh, sc, g, b, ln: x + g * (ln(x) * (1 + sc) + sh)),
            ("branch is missing",)),
    Attempt("no norm", _m(lambda x, sh, sc, g, b, ln: x + g * b(x * (1 + sc) + sh)),
            ("without being normalized",)),
    Attempt("modulate, then normalize", _m(lambda x, sh, sc, g, b, ln: x + g * b(ln(x * (1 + sc) + sh))),
            ("before normalizing",)),
    Attempt("modulate the branch output", _m(lambda x, sh, sc, g, b, ln: x + g * (b(ln(x)) * (1 + sc) + sh)),
            ("output instead of its input",)),
    Attempt("broadcast over tokens", _wrong_axis, ("wrong axis", "[:, None, :]")),
    Attempt("eps 1e-5 (F.layer_norm's default)",
            lambda x, sh, sc, g, b: _adaln(x, sh, sc, g, b, norm=lambda t: F.layer_norm(t, t.shape[-1:])),
            ("eps = 1e-5",)),
    Attempt("nn.LayerNorm with its default eps",
            lambda x, sh, sc, g, b: _adaln(x, sh, sc, g, b, norm=nn.LayerNorm(x.shape[-1],
                                                                            elementwise_affine=False)),
            ("eps = 1e-5",)),
    Attempt("no eps", lambda *a: _adaln(*a, norm=_ln_with(eps=0.0)), ("no eps",)),
    Attempt("eps outside the square root", lambda *a: _adaln(*a, norm=_ln_with(outside=True)),
            ("inside the square root",)),
    Attempt("unbiased variance", lambda *a: _adaln(*a, norm=_ln_with(unbiased=True)), ("unbiased",)),
    Attempt("normalized over the tokens", lambda *a: _adaln(*a, norm=_ln_with(dims=(1,))),
            ("over the tokens",)),
    Attempt("normalized over x.shape[1:]",
            lambda x, *a: _adaln(x, *a, norm=lambda t: F.layer_norm(t, t.shape[1:], eps=1e-6)),
            ("tokens and channels together",)),
    Attempt("scale updated in place", _adaln_in_place, ("in place",)),
    Attempt("unsqueeze_ on the conditioning", _unsqueeze_in_place, ("in place",)),
    Attempt("returns float64", lambda x, *a: _adaln(x.double(), *(t.double() for t in a[:3]), a[3]),
            ("dtype",)),
)


# ------------------------------------------------------------------ strip LayerNorms

def _by_names(model):
    """named_modules, then setattr on the parent"""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)]
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return model


def _recursive(model):
    """recursive over named_children"""
    for name, child in model.named_children():
        if isinstance(child, nn.LayerNorm):
            setattr(model, name, nn.Identity())
        else:
            _recursive(child)
    return model


def _apply(model):
    """model.apply"""
    def swap(module):
        for name, child in module.named_children():
            if isinstance(child, nn.LayerNorm):
                setattr(module, name, nn.Identity())
    return model.apply(swap)


def _modules_dict(model):
    """the _modules dict"""
    for module in list(model.modules()):
        for name, child in module._modules.items():
            if isinstance(child, nn.LayerNorm):
                module._modules[name] = nn.Identity()
    return model


def _in_place_no_return(model):
    _recursive(model)


def _copy(model):
    """a stripped deep copy"""
    return _by_names(copy.deepcopy(model))


def _top_level_only(model):
    for name, child in list(model.named_children()):
        if isinstance(child, nn.LayerNorm):
            setattr(model, name, nn.Identity())
    return model


def _blocks_only(model):
    for block in getattr(model, "blocks", []):
        block.norm_attn = nn.Identity()
        block.norm_mlp = nn.Identity()
    return model


def _first_only(model):
    for name, m in model.named_modules():
        if isinstance(m, nn.LayerNorm):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
            break
    return model


def _reset_affine(model):
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def _patched_forward(model):
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.forward = lambda x: x
    return model


def _copy_not_returned(model):
    _by_names(copy.deepcopy(model))


def _to(make):
    def strip(model):
        for name in [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)]:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, make())
        return model
    return strip


def _deleted(model):
    for name in [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)]:
        parent, _, child = name.rpartition(".")
        delattr(model.get_submodule(parent) if parent else model, child)
    return model


def _reinitialized(model):
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    return _by_names(model)


def _every_norm_class(model):
    names = [n for n, m in model.named_modules() if "Norm" in type(m).__name__]
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return model


def _every_vector_weight(model):
    # "a norm is a module whose weight is a vector": BatchNorm and RMSNorm too
    names = [n for n, m in model.named_modules()
             if getattr(m, "weight", None) is not None and m.weight.dim() == 1]
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return model


def _exact_type(model):
    """type(m) is nn.LayerNorm"""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.LayerNorm:
                setattr(module, name, nn.Identity())
    return model


def _fresh_model(model):
    if isinstance(model, TinyGPT):                       # a new model: its weights are random
        config = copy.deepcopy(model.config)
        config.norm = "identity"
        return TinyGPT(config)
    return strip_layer_norms(model)


class _Affine(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x):
        return x * self.weight + self.bias


def _keep_affine(model):
    return _to_each(model, lambda m: _Affine(m))


def _also_c_fc(model):
    for name in [n for n, m in model.named_modules()
                 if isinstance(m, nn.LayerNorm) or isinstance(m, nn.Linear) and n.endswith("c_fc")]:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, nn.Identity())
    return model


def _to_each(model, make):
    for name, m in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)]:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, make(m))
    return model


STRIP_NEAR_MISSES = (
    Attempt("a fresh model without norms", _fresh_model, ("trained weights",)),
    Attempt("the affine map kept", _keep_affine, ("should not have",)),
    Attempt("the MLP's first Linear removed too", _also_c_fc, ("that are not LayerNorm's are gone",)),
    Attempt("replaced by nn.Flatten", lambda model: _to_each(model, lambda m: nn.Flatten()),
            ("no longer runs after your function",)),
    Attempt("top-level children only", _top_level_only, ("still there",)),
    Attempt("blocks' norm_attn and norm_mlp only", _blocks_only, ("still there", "norm_final")),
    Attempt("the first LayerNorm only", _first_only, ("still there",)),
    Attempt("weight 1, bias 0", _reset_affine, ("still divides by sigma",)),
    Attempt("forward patched to the identity", _patched_forward, ("still there",)),
    Attempt("stripped a copy, returned nothing", _copy_not_returned, ("returned None", "copy")),
    Attempt("replaced by None", _to(lambda: None), ("by None",)),
    Attempt("deleted", _deleted, ("no longer runs",)),
    Attempt("replaced by nn.Softmax", _to(lambda: nn.Softmax(-1)), ("computes something else",)),
    Attempt("weights re-initialized", _reinitialized, ("trained weights",)),
    Attempt("returns an int", lambda model: 0, ("return the model",)),
    Attempt("in place, returns None", _in_place_no_return, ("returned None", "return the model")),
    Attempt("every *Norm* class", _every_norm_class, ("RMSNorm", "BatchNorm", "only nn.LayerNorm")),
    Attempt("every module with a weight of shape (d,)", _every_vector_weight,
            ("only nn.LayerNorm",)),
)


STRIP_RIGHT_ANSWERS = attempts(_by_names, _recursive, _apply, _modules_dict, _exact_type, _copy,
                              strip_layer_norms)

CASES = [  # Exercise(checker, notebook, function, near misses, right answers)
    Exercise(check_adaln_zero, NOTEBOOK, "my_adaln_zero", ADALN_NEAR_MISSES,
             attempts(_adaln, _by_hand, _module, _in_float64, _loop_over_samples)),
    Exercise(check_strip_layer_norms, NOTEBOOK, "my_strip_layer_norms", STRIP_NEAR_MISSES,
             STRIP_RIGHT_ANSWERS),
]
