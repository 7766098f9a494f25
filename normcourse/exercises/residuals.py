"""Checkers for the chapter "Residual connections".

- :func:`check_residual_jacobian`: the Jacobian of ``x + W2 tanh(W1 x)``, with its identity term.
- :func:`check_gpt2_init`: GPT-2's 1/sqrt(N) initialization of the layers that write into the stream.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from normcourse.exercises.feedback import (
    Mistake, Wrong, call_learner, checker, compare, expect_tensor, float32_error, generator,
    max_error,
)

__all__ = ["check_residual_jacobian", "check_gpt2_init"]


def _jacobian(W1, W2, x):
    """The reference J = I + W2 diag(1 - tanh(W1 x)^2) W1, in the inputs' dtype."""
    s = 1 - torch.tanh(W1 @ x) ** 2
    return torch.eye(x.shape[0], dtype=x.dtype) + W2 @ torch.diag(s) @ W1


@checker
def check_residual_jacobian(fn) -> str:
    """``fn(W1, W2, x)`` returns d/dx of ``x + W2 @ tanh(W1 @ x)`` for a vector ``x``."""
    gen = generator(21)
    for d, h in ((5, 9), (6, 6), (8, 3)):  # non-square first: shapes tell W1 from W2
        W1 = torch.randn(h, d, generator=gen, dtype=torch.float64)
        W2 = torch.randn(d, h, generator=gen, dtype=torch.float64) / math.sqrt(h)
        x = torch.randn(d, generator=gen, dtype=torch.float64)
        like = torch.empty(d, d, dtype=torch.float64)
        out = expect_tensor(call_learner(fn, W1, W2, x, name="residual_jacobian"), like,
                            name="the Jacobian",
                            shape_hint=f"f maps R^{d} to R^{d}, so its Jacobian is a {d} x {d} "
                                       "matrix: row i holds the derivatives of f_i.")
        ref = _jacobian(W1, W2, x)
        # The inputs are float64, but computing in float32 inside is fine: allow a few
        # times the error float32 makes here.
        tol = 4 * float32_error(_jacobian, W1, W2, x) + 1e-10
        eye = torch.eye(d, dtype=torch.float64)
        tanh = torch.tanh(W1 @ x)

        def through(s):  # I + W2 diag(s) W1 for another s: a wrong derivative of tanh
            return lambda: eye + W2 @ torch.diag(s) @ W1

        compare(out, ref, tol, [
            Wrong("you returned the Jacobian of the branch only: the identity is missing.",
                  "the skip connection contributes d x / d x = I: add torch.eye(d).",
                  lambda: ref - eye),
            Wrong("the derivative of tanh is missing.",
                  "d tanh(u)/du = 1 - tanh(u)^2: put diag(1 - tanh(W1 x)^2) between W2 and W1.",
                  lambda: eye + W2 @ W1),
            Wrong("you used tanh(u) where its derivative 1 - tanh(u)^2 belongs.",
                  "d tanh(u)/du = 1 - tanh(u)^2.", through(tanh)),
            Wrong("your Jacobian is transposed.",
                  "row i, column j should hold d f_i / d x_j: J = I + W2 diag(s) W1.",
                  lambda: ref.T),
            Wrong("your derivative of tanh is 1 - tanh(u): the tanh is not squared.",
                  "d tanh(u)/du = 1 - tanh(u)^2 = 1 - tanh(u) * tanh(u).", through(1 - tanh)),
            Wrong("you squared (1 - tanh(u)); the derivative is 1 - tanh(u)^2, with only tanh "
                  "squared: you wrote (1 - tanh(u))^2.",
                  "d tanh(u)/du = 1 - tanh(u) ** 2 (the power binds tighter than the minus).",
                  through((1 - tanh) ** 2)),
            Wrong("a sign error in the derivative of tanh: you used 1 + tanh(u)^2.",
                  "d tanh(u)/du = 1 - tanh(u)^2, which lies between 0 and 1.",
                  through(1 + tanh ** 2)),
            Wrong("a sign error: the branch's Jacobian enters with a minus sign "
                  "(I - W2 diag(s) W1).",
                  "f(x) = x + W2 tanh(W1 x): both terms are added, so J = I + W2 diag(s) W1.",
                  lambda: 2 * eye - ref),
        ], otherwise=Mistake(
            f"for x of size {d} and a hidden size of {h}, the largest error is "
            f"{max_error(out, ref):.3g}.",
            "J = I + W2 @ diag(1 - tanh(W1 @ x)^2) @ W1; check it against "
            "torch.autograd.functional.jacobian."))
    return "residual_jacobian is correct: J = I + W2 diag(1 - tanh^2) W1, the identity included."


# A normal distribution puts 68.27% of its mass within one standard deviation of the mean.
# Over the >= 65k weights drawn below the measured share scatters by about 0.1 percentage
# point, so 1.5 points of slack never rejects a normal draw, while a uniform draw with
# the same std (57.7%) or a Laplace one (75.7%) is far outside.
_WITHIN_ONE_STD = math.erf(1 / math.sqrt(2))
_WITHIN_SLACK = 0.015


def _expect_normal(w: torch.Tensor, std: float):
    """Right mean and std are not enough: GPT-2 draws the weights from a normal distribution."""
    within = float((w.abs() <= std).float().mean())
    if abs(within - _WITHIN_ONE_STD) > _WITHIN_SLACK:
        raise Mistake(f"the weights have the right std, but {within:.1%} of them lie within one "
                      f"std of 0; a normal distribution puts {_WITHIN_ONE_STD:.1%} there (a "
                      "uniform one 57.7%): they are not normally distributed.",
                      "draw them from a normal: torch.nn.init.normal_(linear.weight, 0.0, std).")


def _explain_init(err: Exception) -> str | None:
    """A hint for the error autograd raises on an in-place edit of a parameter."""
    if "leaf Variable that requires grad" in str(err):
        return ("a parameter cannot be changed in place while autograd watches it: use "
                "torch.nn.init.normal_(linear.weight, 0.0, std), which does it under "
                "torch.no_grad(), or wrap your own in-place call in `with torch.no_grad():`.")
    return None


@checker
def check_gpt2_init(fn) -> str:
    """``fn(linear, n_layer, base_std)`` fills linear.weight with N(0, base_std^2 / (2 n_layer))."""
    for n_layer, base_std, width in ((12, 0.02, 768), (4, 0.1, 256), (48, 0.02, 512)):
        torch.manual_seed(n_layer)
        lin = nn.Linear(width, width)
        param = lin.weight
        before = lin.weight.detach().clone()
        bias_before = lin.bias.detach().clone()
        call_learner(fn, lin, n_layer, base_std, name="gpt2_init_", explain=_explain_init)
        if lin.weight is not param:
            raise Mistake("you replaced linear.weight with a new Parameter instead of filling the "
                          "existing one in place: an optimizer built before the call still holds "
                          "the old weight, and a model's tied weights come apart.",
                          "fill it in place: torch.nn.init.normal_(linear.weight, 0.0, std) (or "
                          "linear.weight.normal_(...) under torch.no_grad()).")
        if lin.bias is None or not torch.equal(lin.bias.detach(), bias_before):
            zeroed = lin.bias is not None and not lin.bias.detach().any()
            raise Mistake("you changed linear.bias too" + (
                " (you zeroed it)" if zeroed else "") + ": the exercise fills only "
                "linear.weight, and the scaled initialization is for weights (nanoGPT sets "
                "biases to zero in a separate step, for every layer).",
                "leave the bias as it is: call torch.nn.init.normal_ on linear.weight only, "
                "not on every parameter of the layer.")
        w = lin.weight.detach()
        if torch.equal(w, before):
            raise Mistake("linear.weight was not changed.",
                          "fill it in place, e.g. torch.nn.init.normal_(linear.weight, 0.0, std).")
        expected = base_std / math.sqrt(2 * n_layer)
        std = float(w.std())
        rel = std / expected
        if abs(float(w.mean())) > 0.05 * expected:
            raise Mistake("the weights do not have mean 0.", "use mean=0.0.")
        if 0.97 < rel < 1.03:  # 3% off is a draw's scatter, not a mistake
            _expect_normal(w, std)
            continue
        wrong = Mistake(f"with n_layer={n_layer}, base_std={base_std} the weights have std "
                        f"{std:.3g}, expected {expected:.3g}.",
                        "std = base_std / math.sqrt(2 * n_layer).")
        # the std as a multiple of the right one, against the known wrong multiples
        compare(rel, 1.0, 0.0, [
            Wrong(f"std {std:.3g} is sqrt(2) too large: you divided by sqrt(n_layer).",
                  "GPT-2 has two residual branches per block (attention and MLP): "
                  "N = 2 * n_layer.", lambda: math.sqrt(2)),
            Wrong(f"std {std:.3g}: you divided by 2 * n_layer instead of its square root.",
                  "the standard deviation is base_std / sqrt(2 * n_layer).",
                  lambda: 1 / math.sqrt(2 * n_layer)),
            Wrong(f"std {std:.3g}: the weights are not scaled down at all.",
                  "divide base_std by math.sqrt(2 * n_layer).", lambda: math.sqrt(2 * n_layer)),
            Wrong(f"std {std:.3g}: you passed the variance where the standard deviation belongs.",
                  "torch.nn.init.normal_ takes std, not variance.", lambda: expected),
        ], rtol=0.03, otherwise=wrong)
        raise wrong
    return "gpt2_init_ is correct: std = base_std / sqrt(2 * n_layer)."
