"""Chapter 2, "Residual connections": near misses and unusual right answers."""

from __future__ import annotations

import math

import torch
from torch import nn

from near_misses import Attempt, Exercise
from normcourse.exercises.residuals import check_gpt2_init, check_residual_jacobian

NOTEBOOK = "notebooks/02_residual_connections.ipynb"


# ---- residual_jacobian(W1, W2, x) -----------------------------------------------------

def _eye(x):
    return torch.eye(x.shape[0], dtype=x.dtype)


def _jac(derivative, identity=1.0, transpose=False, sign=1.0):
    def fn(W1, W2, x):
        J = identity * _eye(x) + sign * W2 @ torch.diag(derivative(W1 @ x)) @ W1
        return J.T if transpose else J
    return fn


def _sech2(u):
    return 1 - torch.tanh(u) ** 2


def _jac_autograd(W1, W2, x):
    return torch.autograd.functional.jacobian(lambda v: v + W2 @ torch.tanh(W1 @ v), x)


def _jac_func(W1, W2, x):
    return torch.func.jacrev(lambda v: v + W2 @ torch.tanh(W1 @ v))(x)


def _jac_broadcast(W1, W2, x):
    return _eye(x) + (W2 * (1 - torch.tanh(W1 @ x) ** 2)) @ W1   # W2 * s == W2 @ diag(s)


def _jac_cosh(W1, W2, x):
    return _eye(x) + W2 @ torch.diag(1 / torch.cosh(W1 @ x) ** 2) @ W1


def _jac_loops(W1, W2, x):
    d, h = x.shape[0], W1.shape[0]
    s = [1 - math.tanh(float(W1[k] @ x)) ** 2 for k in range(h)]
    J = torch.zeros(d, d, dtype=x.dtype)
    for i in range(d):
        for j in range(d):
            J[i, j] = (1.0 if i == j else 0.0) + sum(W2[i, k] * s[k] * W1[k, j] for k in range(h))
    return J


def _jac_float32(W1, W2, x):
    return _jac(_sech2)(W1.float(), W2.float(), x.float()).to(x.dtype)


def _jac_einsum(W1, W2, x):
    return _eye(x) + torch.einsum("ik,k,kj->ij", W2, _sech2(W1 @ x), W1)


RESIDUAL_JACOBIAN = Exercise(
    check_residual_jacobian, NOTEBOOK, "residual_jacobian",
    near_misses=(
        Attempt("identity forgotten", _jac(_sech2, identity=0.0), ("identity is missing",)),
        Attempt("tanh' forgotten", _jac(lambda u: torch.ones_like(u)),
                ("derivative of tanh is missing",)),
        Attempt("tanh for its derivative", _jac(torch.tanh), ("1 - tanh(u)^2",)),
        Attempt("1 - tanh, not squared", _jac(lambda u: 1 - torch.tanh(u)),
                ("not squared",)),
        Attempt("(1 - tanh)^2", _jac(lambda u: (1 - torch.tanh(u)) ** 2), ("(1 - tanh(u))^2",)),
        Attempt("1 + tanh^2", _jac(lambda u: 1 + torch.tanh(u) ** 2), ("sign",)),
        Attempt("transposed", _jac(_sech2, transpose=True), ("transposed",)),
        Attempt("I - branch", _jac(_sech2, sign=-1.0), ("sign",)),
        Attempt("2 I", _jac(_sech2, identity=2.0), ("largest error",)),
        Attempt("W1 and W2 in the wrong order",
                lambda W1, W2, x: torch.eye(W1.shape[0], dtype=x.dtype)
                + W1 @ torch.diag(_sech2(W1 @ x)) @ W2, ("matrix",)),
        Attempt("float32 result", lambda W1, W2, x: _jac(_sech2)(W1, W2, x).float(),
                ("dtype",)),
        Attempt("a branch-only Jacobian of shape (h, h)",
                lambda W1, W2, x: W1 @ W2 + torch.eye(W1.shape[0], dtype=x.dtype),
                ("matrix",)),
    ),
    right_answers=(
        Attempt("autograd.functional.jacobian", _jac_autograd),
        Attempt("torch.func.jacrev", _jac_func),
        Attempt("W2 * s broadcast", _jac_broadcast),
        Attempt("1 / cosh^2", _jac_cosh),
        Attempt("python loops", _jac_loops),
        Attempt("float32 inside", _jac_float32),
        Attempt("einsum", _jac_einsum),
    ),
)


# ---- gpt2_init_(linear, n_layer, base_std) --------------------------------------------

def _init(std_of, fill=None):
    def fn(linear, n_layer, base_std=0.02):
        std = std_of(n_layer, base_std)
        if fill is None:
            nn.init.normal_(linear.weight, mean=0.0, std=std)
        else:
            fill(linear, std)
    return fn


def _right_std(n_layer, base_std):
    return base_std / math.sqrt(2 * n_layer)


def _replace(linear, std):
    linear.weight = nn.Parameter(torch.randn_like(linear.weight) * std)


def _uniform(linear, std):
    bound = std * math.sqrt(3)     # the same std, but uniform
    nn.init.uniform_(linear.weight, -bound, bound)


def _copy_in(linear, std):
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape) * std)


def _data_assigned(linear, std):
    linear.weight.data = torch.randn(linear.weight.shape) * std   # the same Parameter object


def _data_normal(linear, std):
    linear.weight.data.normal_(0.0, std)


def _scale_after(linear, std):
    nn.init.normal_(linear.weight, 0.0, std * math.sqrt(2) * 7)
    with torch.no_grad():
        linear.weight.mul_(1 / (math.sqrt(2) * 7))


def _trunc_normal(linear, std):
    nn.init.trunc_normal_(linear.weight, 0.0, std, a=-3 * std, b=3 * std)


def _normal_no_grad(linear, std):
    with torch.no_grad():
        return linear.weight.normal_(0.0, std)


def _returns_new(linear, std):
    new = nn.Linear(linear.in_features, linear.out_features)
    nn.init.normal_(new.weight, 0.0, std)
    return new


def _all_parameters(linear, std):
    for p in linear.parameters():       # the bias too
        nn.init.normal_(p, 0.0, std)


def _bias_zeroed(linear, std):
    nn.init.normal_(linear.weight, 0.0, std)
    nn.init.zeros_(linear.bias)


def _swapped_mean_std(linear, std):
    nn.init.normal_(linear.weight, std, std)    # normal_(tensor, mean, std) given (std, std)


GPT2_INIT = Exercise(
    check_gpt2_init, NOTEBOOK, "gpt2_init_",
    near_misses=(
        Attempt("sqrt(n_layer)", _init(lambda n, s: s / math.sqrt(n)), ("sqrt(2) too large",)),
        Attempt("2 n_layer, no sqrt", _init(lambda n, s: s / (2 * n)), ("square root",)),
        Attempt("not scaled", _init(lambda n, s: s), ("not scaled down",)),
        Attempt("variance as std", _init(lambda n, s: s ** 2 / (2 * n)), ("variance",)),
        Attempt("uniform, right std", _init(_right_std, _uniform), ("not normally distributed",)),
        Attempt("parameter replaced", _init(_right_std, _replace), ("replaced",)),
        Attempt("a new Linear returned", _init(_right_std, _returns_new), ("not changed",)),
        Attempt("mean = std", _init(_right_std, _swapped_mean_std), ("mean 0",)),
        Attempt("the default 0.02, not base_std",
                _init(lambda n, s: 0.02 / math.sqrt(2 * n)), ("base_std=0.1",)),
        Attempt("normal_ on the parameter outside no_grad",
                lambda lin, n, s=0.02: lin.weight.normal_(0.0, s / math.sqrt(2 * n)),
                ("torch.no_grad()",)),
        Attempt("sqrt(2 n_layer + 1)", _init(lambda n, s: s / math.sqrt(2 * n + 1)),
                ("expected",)),
        Attempt("n_layer ** -2", _init(lambda n, s: s * n ** -2), ("expected",)),
        Attempt("every parameter filled, the bias too", _init(_right_std, _all_parameters),
                ("linear.bias",)),
        Attempt("the bias zeroed as well", _init(_right_std, _bias_zeroed), ("zeroed",)),
    ),
    right_answers=(
        Attempt("copy_ under no_grad", _init(_right_std, _copy_in)),
        Attempt(".data.normal_", _init(_right_std, _data_normal)),
        Attempt("new values assigned to .data", _init(_right_std, _data_assigned)),
        Attempt("normal_ then scale in place", _init(_right_std, _scale_after)),
        Attempt("trunc_normal_ at 3 std", _init(_right_std, _trunc_normal)),
        Attempt("std from n_layer ** -0.5", _init(lambda n, s: s * (2 * n) ** -0.5)),
        Attempt("normal_ under no_grad, returns the weight", _init(_right_std, _normal_no_grad)),
    ),
)

CASES = [RESIDUAL_JACOBIAN, GPT2_INIT]
