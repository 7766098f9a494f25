"""Chapter 8, "Where the norm goes": a Pre-LN block and DeepNorm's residual.

The checker passes real nn.Module sub-layers (as the chapter does with a Block's
``attn``, ``mlp``, ``norm_attn``, ``norm_mlp``), so answers that build an
``nn.Sequential`` or call ``.forward`` are right answers.
"""

import torch
import torch.nn as nn

from checker_run import _not_implemented
from near_misses import Attempt, Exercise, attempts
from normcourse.exercises.placements import check_deepnorm_residual, check_pre_ln_block

NOTEBOOK = "notebooks/08_where_the_norm_goes.ipynb"


# ------------------------------------------------------------------ Pre-LN: right answers

def _two_lines(x, attn, mlp, na, nm):
    """two lines"""
    h = x + attn(na(x))
    return h + mlp(nm(h))


def _loop(x, attn, mlp, na, nm):
    """a loop over (sub-layer, norm)"""
    for sub, norm in ((attn, na), (mlp, nm)):
        x = x + sub(norm(x))
    return x


def _sequential(x, attn, mlp, na, nm):
    """nn.Sequential(norm, sub-layer)"""
    h = x + nn.Sequential(na, attn)(x)
    return h + nn.Sequential(nm, mlp)(h)


def _forward_calls(x, attn, mlp, na, nm):
    """.forward calls and torch.add"""
    h = torch.add(x, attn.forward(na.forward(x)))
    return h.add(mlp.forward(nm.forward(h)))


# ------------------------------------------------------------------ Pre-LN: near misses

def _post_ln(x, attn, mlp, na, nm):
    h = na(x + attn(x))
    return nm(h + mlp(h))


def _in_place(x, attn, mlp, na, nm):
    x += attn(na(x))                                     # changes the caller's tensor
    return x + mlp(nm(x))


PRE_LN_NEAR_MISSES = (
    Attempt("Post-LN", _post_ln, ("Post-LN",)),
    Attempt("parallel sub-layers", lambda x, a, m, na, nm: x + a(na(x)) + m(nm(x)), ("parallel",)),
    Attempt("no skip connections", lambda x, a, m, na, nm: m(nm(a(na(x)))), ("skip",)),
    Attempt("no MLP residual", lambda x, a, m, na, nm: m(nm(x + a(na(x)))), ("MLP's residual",)),
    Attempt("no attention residual", lambda x, a, m, na, nm: (lambda h: h + m(nm(h)))(a(na(x))),
            ("attention's residual",)),
    Attempt("normalized skip",
            lambda x, a, m, na, nm: (lambda n: (lambda h: h + m(nm(h)))(n + a(n)))(na(x)),
            ("normalized input",)),
    Attempt("norm_attn twice", lambda x, a, m, na, nm: (lambda h: h + m(na(h)))(x + a(na(x))),
            ("its own norm",)),
    Attempt("norm_mlp twice", lambda x, a, m, na, nm: (lambda h: h + m(nm(h)))(x + a(nm(x))),
            ("norm_mlp before attention",)),
    Attempt("MLP half missing", lambda x, a, m, na, nm: x + a(na(x)), ("MLP half is missing",)),
    Attempt("norms swapped", lambda x, a, m, na, nm: (lambda h: h + m(na(h)))(x + a(nm(x))),
            ("swapped the two norms",)),
    Attempt("MLP before attention", lambda x, a, m, na, nm: (lambda h: h + a(na(h)))(x + m(nm(x))),
            ("MLP before attention",)),
    Attempt("norm on the sub-layer output", lambda x, a, m, na, nm:
            (lambda h: h + nm(m(h)))(x + na(a(x))), ("output instead of its input",)),
    Attempt("attention subtracted", lambda x, a, m, na, nm: (lambda h: h + m(nm(h)))(x - a(na(x))),
            ("subtracted the attention's output",)),
    Attempt("MLP subtracted", lambda x, a, m, na, nm: (lambda h: h - m(nm(h)))(x + a(na(x))),
            ("subtracted the MLP's output",)),
    Attempt("no norm before the MLP", lambda x, a, m, na, nm: (lambda h: h + m(h))(x + a(na(x))),
            ("no norm before the MLP",)),
    Attempt("no norm before attention", lambda x, a, m, na, nm: (lambda h: h + m(nm(h)))(x + a(x)),
            ("no norm before attention",)),
    Attempt("normalized output", lambda x, a, m, na, nm: nm(_two_lines(x, a, m, na, nm)),
            ("normalized the block's output",)),
    Attempt("x += ... in place", _in_place, ("in place",)),
    Attempt("float32 output", lambda x, a, m, na, nm: _two_lines(x, a, m, na, nm).float(), ("dtype",)),
    Attempt("half the MLP", lambda x, a, m, na, nm: (lambda h: h + 0.5 * m(nm(h)))(x + a(na(x))),
            ("largest error",)),
    Attempt("the stub", _not_implemented, ("not implemented",)),
)


# ------------------------------------------------------------------ DeepNorm

def _deepnorm_in_place(x, sublayer, norm, alpha):
    f = sublayer(x)
    x.mul_(alpha)                                        # changes the caller's tensor
    return norm(x + f)


def _deepnorm(x, f, n, a):
    """norm(alpha * x + sublayer(x))"""
    return n(a * x + f(x))


def _torch_add(x, f, n, a):
    """torch.add(F(x), x, alpha=alpha)"""
    return n(torch.add(f(x), x, alpha=a))


def _mul_add(x, f, n, a):
    """x.mul(alpha).add(F(x))"""
    return n(x.mul(a).add(f(x)))


def _deepnorm_forward_calls(x, f, n, a):
    """.forward calls"""
    return n.forward(f.forward(x) + a * x)


DEEPNORM_NEAR_MISSES = (
    Attempt("LN(x + a*F(x))", lambda x, f, n, a: n(x + a * f(x)), ("LN(x + alpha*F(x))",)),
    Attempt("alpha not used", lambda x, f, n, a: n(x + f(x)), ("alpha is not used",)),
    Attempt("LN(a*x - F(x))", lambda x, f, n, a: n(a * x - f(x)), ("subtracted",)),
    Attempt("x / alpha", lambda x, f, n, a: n(x / a + f(x)), ("LN(x / alpha + F(x))",)),
    Attempt("alpha after the norm", lambda x, f, n, a: a * n(x + f(x)), ("output of the norm",)),
    Attempt("no norm", lambda x, f, n, a: a * x + f(x), ("norm is missing",)),
    Attempt("Pre-LN style, norm inside too", lambda x, f, n, a: n(a * x + f(n(x))), ("Pre-LN style",)),
    Attempt("Pre-LN with a scaled skip", lambda x, f, n, a: a * x + f(n(x)),
            ("normalized only the sub-layer's input",)),
    Attempt("norm on the skip only", lambda x, f, n, a: n(a * x) + f(x), ("normalized only the skip",)),
    Attempt("skip added again", lambda x, f, n, a: x + n(a * x + f(x)), ("added the skip again",)),
    Attempt("sub-layer reads alpha*x", lambda x, f, n, a: n(a * x + f(a * x)),
            ("sub-layer reads alpha*x",)),
    Attempt("alpha on the sub-layer input", lambda x, f, n, a: n(x + f(a * x)),
            ("sub-layer's input",)),
    Attempt("alpha on the whole sum", lambda x, f, n, a: n(a * (x + f(x))), ("whole sum",)),
    Attempt("x *= alpha in place", _deepnorm_in_place, ("in place",)),
    Attempt("returns None", lambda x, f, n, a: None, ("torch.Tensor",)),
    Attempt("alpha squared", lambda x, f, n, a: n(a ** 2 * x + f(x)), ("largest error",)),
    Attempt("the stub", _not_implemented, ("not implemented",)),
)


CASES = [
    Exercise(
        checker=check_pre_ln_block, notebook=NOTEBOOK, function="my_pre_ln_block",
        near_misses=PRE_LN_NEAR_MISSES,
        right_answers=attempts(_two_lines, _loop, _sequential, _forward_calls),
    ),
    Exercise(
        checker=check_deepnorm_residual, notebook=NOTEBOOK, function="my_deepnorm_residual",
        near_misses=DEEPNORM_NEAR_MISSES,
        right_answers=attempts(_deepnorm, _torch_add, _mul_add, _deepnorm_forward_calls),
    ),
]
