"""Checkers for chapter 11, "Life without normalization".

- :func:`check_adaln_zero`: ``fn(x, shift, scale, gate, branch) -> y``, one
  AdaLN-Zero residual branch (Peebles & Xie 2022): ``x + gate * branch(LN(x) *
  (1 + scale) + shift)`` with a LayerNorm without affine parameters and the
  per-sample conditioning ``shift, scale, gate`` of shape (B, C) broadcast
  over the T tokens of ``x`` (B, T, C).
- :func:`check_strip_layer_norms`: ``fn(model)`` replaces every
  ``nn.LayerNorm`` of a model by ``nn.Identity``, keeping every other weight.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from normcourse.exercises.feedback import (
    Mistake, Wrong, call_learner, checker, close, compare, expect_tensor, explain_when,
    generator,
)
from normcourse.model import GPTConfig, TinyGPT

__all__ = ["check_adaln_zero", "check_strip_layer_norms"]


# --------------------------------------------------------------------------
# AdaLN-Zero
# --------------------------------------------------------------------------

def _ln(x, eps=1e-6, unbiased=False, eps_outside=False, dims=(-1,)):
    """LayerNorm without affine parameters, with optional deliberate mistakes (for diagnosis)."""
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
    if eps_outside:
        return (x - mean) / (var.sqrt() + eps)
    return (x - mean) / torch.sqrt(var + eps)


def _adaln_zero(x, shift, scale, gate, branch):
    """The reference, in float64."""
    x, shift, scale, gate = x.double(), shift.double(), scale.double(), gate.double()
    h = _ln(x) * (1 + scale[:, None, :]) + shift[:, None, :]
    return x + gate[:, None, :] * branch(h)


def _adaln_variants(x, shift, scale, gate, branch):
    x, sh, sc, g = x.double(), shift.double(), scale.double(), gate.double()
    sh1, sc1, g1 = sh[:, None, :], sc[:, None, :], g[:, None, :]

    def with_norm(h):
        return x + g1 * branch(h * (1 + sc1) + sh1)

    return [
        Wrong("LN(x) is multiplied by scale, not by (1 + scale).",
              "AdaLN-Zero modulates with (1 + scale), so that scale = 0 leaves LN(x) unchanged.",
              lambda: x + g1 * branch(_ln(x) * sc1 + sh1)),
        Wrong("LN(x) is multiplied by (1 - scale); it is (1 + scale).",
              "h = LN(x) * (1 + scale) + shift.",
              lambda: x + g1 * branch(_ln(x) * (1 - sc1) + sh1)),
        Wrong("shift is subtracted; it is added: h = LN(x) * (1 + scale) + shift.",
              "h = LN(x) * (1 + scale) + shift.",
              lambda: x + g1 * branch(_ln(x) * (1 + sc1) - sh1)),
        Wrong("shift and scale are swapped.", "h = LN(x) * (1 + scale) + shift.",
              lambda: x + g1 * branch(_ln(x) * (1 + sh1) + sc1)),
        Wrong("the gate is not applied: the branch output is added to x as it is.",
              "multiply the branch output by gate before adding it to x.",
              lambda: x + branch(_ln(x) * (1 + sc1) + sh1)),
        Wrong("the branch is gated with (1 + gate); AdaLN-Zero gates with gate itself, so that a "
              "zero gate switches the branch off.", "y = x + gate * branch(h).",
              lambda: x + (1 + g1) * branch(_ln(x) * (1 + sc1) + sh1)),
        Wrong("the gate multiplies the whole sum x + branch(...), so it also scales the skip path.",
              "only the branch is gated: y = x + gate * branch(h).",
              lambda: g1 * (x + branch(_ln(x) * (1 + sc1) + sh1))),
        Wrong("the residual connection is missing: you returned only the gated branch.",
              "add x: y = x + gate * branch(h).",
              lambda: g1 * branch(_ln(x) * (1 + sc1) + sh1)),
        Wrong("the branch is missing: the modulated LN(x) is gated and added to x without going "
              "through branch.", "y = x + gate * branch(LN(x) * (1 + scale) + shift).",
              lambda: x + g1 * (_ln(x) * (1 + sc1) + sh1)),
        Wrong("x is modulated without being normalized first.",
              "normalize each token first: LN(x) without affine parameters (F.layer_norm(x, x.shape[-1:])).",
              lambda: x + g1 * branch(x * (1 + sc1) + sh1)),
        Wrong("you modulated x before normalizing it, LN(x * (1 + scale) + shift): the norm then "
              "removes most of the modulation. Normalize first, then modulate.",
              "h = LN(x) * (1 + scale) + shift.",
              lambda: x + g1 * branch(_ln(x * (1 + sc1) + sh1))),
        Wrong("shift and scale modulate the branch's output instead of its input.",
              "modulate LN(x) before it enters the branch: branch(LN(x) * (1 + scale) + shift).",
              lambda: x + g1 * (branch(_ln(x)) * (1 + sc1) + sh1)),
        Wrong("the conditioning is broadcast over the wrong axis: row b of shift/scale/gate went to "
              "token b instead of sample b.",
              "shift, scale and gate are (B, C), one row per sample: use shift[:, None, :] (or "
              ".unsqueeze(1)) so they broadcast over the T tokens.",
              lambda: x + g[None] * branch(_ln(x) * (1 + sc[None]) + sh[None])),
        Wrong("your LayerNorm uses eps = 1e-5 (nn.LayerNorm's and F.layer_norm's default); the "
              "exercise's is 1e-6. On tokens with a small spread the difference shows.",
              "F.layer_norm(x, x.shape[-1:], eps=1e-6), or nn.LayerNorm(C, eps=1e-6, "
              "elementwise_affine=False).",
              lambda: with_norm(_ln(x, eps=1e-5))),
        Wrong("your LayerNorm has no eps: on tokens with a small spread it divides by almost "
              "nothing.", "add eps = 1e-6 to the variance inside the square root.",
              lambda: with_norm(_ln(x, eps=0.0))),
        Wrong("eps is added to the standard deviation; it belongs inside the square root, "
              "sqrt(var + eps).", "(x - mean) / torch.sqrt(var + 1e-6).",
              lambda: with_norm(_ln(x, eps_outside=True))),
        Wrong("you used the unbiased variance (torch.var's default divides by C - 1); LayerNorm "
              "divides by C.", "x.var(-1, keepdim=True, unbiased=False), or F.layer_norm.",
              lambda: with_norm(_ln(x, unbiased=True))),
        Wrong("you normalized over the tokens (dimension 1); LayerNorm normalizes each token over "
              "its C channels, the last dimension.", "F.layer_norm(x, x.shape[-1:], eps=1e-6).",
              lambda: with_norm(_ln(x, dims=(1,)))),
        Wrong("you normalized over tokens and channels together (x.shape[1:]); LayerNorm "
              "normalizes each token on its own, over the last dimension.",
              "F.layer_norm(x, x.shape[-1:], eps=1e-6): normalized_shape is the last dimension only.",
              lambda: with_norm(_ln(x, dims=(1, 2)))),
    ]


_BROADCAST_HINT = ("shift, scale and gate are (B, C), one row per sample, and x is (B, T, C): "
                   "broadcast them over the T tokens with shift[:, None, :] (or .unsqueeze(1)); "
                   "shift[None] or a plain shift lines them up with the wrong axis.")
# A (B, C) conditioning broadcast against (B, T, C) the wrong way fails to broadcast.
_explain_broadcast = explain_when(lambda err: isinstance(err, RuntimeError)
                                  and "must match the size" in str(err), _BROADCAST_HINT)


@checker
def check_adaln_zero(fn: Callable) -> str:
    """Check ``fn(x, shift, scale, gate, branch)``: one AdaLN-Zero residual branch."""
    g = generator(1111)
    w = torch.randn(16, 16, generator=g, dtype=torch.float64) / 4

    def branch(h):  # a fixed, non-linear stand-in for attention or the MLP
        return torch.tanh(h @ w.to(h.dtype)) + 0.1

    cases = []
    for B, T, s in ((3, 5, 0.5), (4, 4, 1.0), (2, 7, 0.3)):   # B == T catches a wrong broadcast
        x = torch.randn(B, T, 16, generator=g) * 2 + 0.5
        cases.append((x, *(torch.randn(B, 16, generator=g) * s for _ in range(3))))
    # Last, the first shape again with tokens of small spread (variance about 1e-5, the
    # size of eps): there the eps of the norm, and where it sits, change the result.  The
    # earlier cases name the other mistakes first, on inputs where eps does not matter.
    spread = torch.tensor([3e-3, 1.0, 1e-2, 5e-3, 2.0])[None, :, None]
    x = 0.5 + torch.randn(3, 5, 16, generator=g) * spread
    cases.append((x, *(torch.randn(3, 16, generator=g) * 0.5 for _ in range(3))))
    for x, shift, scale, gate in cases:
        label = f"x of shape {tuple(x.shape)}"
        out = call_learner(fn, x, shift, scale, gate, branch, name="your adaln_zero",
                           explain=_explain_broadcast)
        expect_tensor(out, x, name=f"the output ({label})", shape_hint="the output has the shape of x.")
        ref = _adaln_zero(x, shift, scale, gate, branch)
        compare(out, ref, 1e-4, _adaln_variants(x, shift, scale, gate, branch),
                name=f"the output ({label})")
    # the "Zero": a zero gate (the initial value) makes the block the identity, whatever the rest
    x, shift, scale, _ = cases[0]
    out = call_learner(fn, x, shift, scale, torch.zeros_like(shift), branch, name="your adaln_zero")
    if not close(out, x, atol=1e-6):
        raise Mistake("with gate = 0 your function does not return x unchanged.",
                      "y = x + gate * branch(h): a zero gate must switch the branch off.")
    return ("check_adaln_zero: matches x + gate * branch(LN(x) * (1 + scale) + shift) on 3 shapes, "
            "and is the identity when gate = 0.")


# --------------------------------------------------------------------------
# Replace every LayerNorm by the identity
# --------------------------------------------------------------------------

def _reference_strip(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    for name in [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)]:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, nn.Identity())
    return model


def _models():
    torch.manual_seed(7)
    pre = TinyGPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=16, placement="pre"))
    peri = TinyGPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=16,
                             placement="peri", embed_norm=True))
    # other norms are not LayerNorms and stay: an RMSNorm and a BatchNorm (in eval mode)
    seq = nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.GELU(), nn.BatchNorm1d(16),
                        nn.Linear(16, 16), nn.RMSNorm(16), nn.LayerNorm(16)).eval()
    with torch.no_grad():  # trained-looking norms: weights and biases away from 1 and 0
        for m in (pre, peri, seq):
            for mod in m.modules():
                if isinstance(mod, (nn.LayerNorm, nn.RMSNorm, nn.BatchNorm1d)):
                    mod.weight.normal_(1.0, 0.3)
                if isinstance(mod, (nn.LayerNorm, nn.BatchNorm1d)):
                    mod.bias.normal_(0.0, 0.3)
    x_tok = torch.randint(0, 11, (2, 8), generator=generator(3))
    x_vec = torch.randn(5, 6, generator=generator(4))
    return [("a pre-LN TinyGPT", pre, x_tok), ("a peri-LN TinyGPT with an embedding norm", peri, x_tok),
            ("an nn.Sequential MLP", seq, x_vec)]


def _output(model, x):
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


def _none_children(model: nn.Module) -> list[str]:
    """Names of sub-module slots that hold None (named_modules() silently skips them)."""
    return [f"{parent}.{child}" if parent else child
            for parent, module in model.named_modules()
            for child, sub in module._modules.items() if sub is None]


def _run_stripped(model: nn.Module, x: torch.Tensor, label: str) -> torch.Tensor:
    """The stripped model's output; its failure is the learner's edit, not the checker's."""
    try:
        return _output(model, x)
    except Exception as err:
        raise Mistake(f"{label} no longer runs after your function: {type(err).__name__}: {err}",
                      "replace each nn.LayerNorm by nn.Identity() and leave every other module "
                      "as it is.") from None


@checker
def check_strip_layer_norms(fn: Callable) -> str:
    """Check ``fn(model)``: every nn.LayerNorm replaced by nn.Identity, other weights kept."""
    for label, model, x in _models():
        ref = _reference_strip(model)
        n_norms = sum(isinstance(m, nn.LayerNorm) for m in model.modules())
        empty_before = set(_none_children(model))
        out = call_learner(fn, model, name="your strip_layer_norms")
        if out is not None and not isinstance(out, nn.Module):
            raise Mistake(f"your function returned {type(out).__name__} {out!r:.40}; return the "
                          "model.", "end with `return model`.")
        result = out if out is not None else model
        left = [n for n, m in result.named_modules() if isinstance(m, nn.LayerNorm)]
        if out is None and len(left) == n_norms:
            raise Mistake(f"your function returned None and the model it was given ({label}) "
                          "still has all its LayerNorms: if you replaced them in a copy, that "
                          "copy is lost.",
                          "replace the norms in the model itself, or `return` the copy; the "
                          "exercise asks you to return the model.")
        if out is None:
            raise Mistake(f"your function changed {label} in place but returned None; the "
                          "exercise asks you to return the model (code that calls it writes "
                          "model = strip_layer_norms(model)).", "end with `return model`.")
        now = dict(result.named_modules())
        kept = [f"{n} ({type(m).__name__})" for n, m in ref.named_modules()
                if "Norm" in type(m).__name__ and isinstance(now.get(n), nn.Identity)]
        if kept:
            raise Mistake(f"you also replaced {', '.join(kept[:3])} of {label} by the identity: "
                          "only nn.LayerNorm goes; other norms such as RMSNorm and BatchNorm "
                          "stay as they are.",
                          "test isinstance(module, nn.LayerNorm), not the class name.")
        if left:
            raise Mistake(f"{len(left)} of the {n_norms} LayerNorms of {label} are still there: "
                          f"{', '.join(left)}.",
                          "walk every sub-module with model.named_modules() instead of naming "
                          "attributes, and replace each nn.LayerNorm by nn.Identity() on its parent "
                          "(model.get_submodule(parent_name)); setting weight to 1 and bias to 0 "
                          "still divides by sigma.")
        emptied = [n for n in _none_children(result) if n not in empty_before]
        if emptied:
            raise Mistake(f"you replaced {', '.join(emptied[:4])} of {label} by None; the forward "
                          "pass still calls each of them, and None cannot be called.",
                          "replace each nn.LayerNorm by nn.Identity(), a module that returns its "
                          "input unchanged.")
        got, want = result.state_dict(), ref.state_dict()
        missing = sorted(set(want) - set(got))
        if missing:
            raise Mistake(f"weights that are not LayerNorm's are gone from {label}: "
                          f"{', '.join(missing[:4])}.",
                          "replace only the nn.LayerNorm modules.")
        extra = sorted(set(got) - set(want))
        if extra:
            raise Mistake(f"{label} has parameters the LayerNorm-free model should not have: "
                          f"{', '.join(extra[:4])}.",
                          "nn.Identity() has no weight or bias: the affine map goes with the norm.")
        changed = [k for k in want if not torch.equal(got[k], want[k])]
        if changed:
            raise Mistake(f"the trained weights of {label} changed ({', '.join(changed[:3])}).",
                          "keep the model's own weights: replace the norms in the model you were "
                          "given (or a copy of it), do not build a new one.")
        with torch.no_grad():
            y, y_ref = _run_stripped(result, x, label), _output(ref, x)
        if not isinstance(y, torch.Tensor) or y.shape != y_ref.shape:
            raise Mistake(f"{label} no longer returns what it did: after your function its output "
                          f"is {type(y).__name__} {tuple(getattr(y, 'shape', ()))}, expected a "
                          f"tensor of shape {tuple(y_ref.shape)}.",
                          "nn.Identity() returns its input unchanged; replace the LayerNorms "
                          "by it.")
        if not close(y, y_ref, atol=1e-5):
            raise Mistake(f"{label} without its LayerNorms computes something else than with each "
                          "LayerNorm replaced by the identity.",
                          "use nn.Identity(), which returns its input unchanged.")
    return ("check_strip_layer_norms: every LayerNorm replaced by the identity in 3 models "
            "(including nested and embedding norms), all other weights kept.")
