"""Checkers for the chapters "LayerNorm in Triton" and "Fusing the residual add".

Normalization is memory-bound, so its cost is the bytes it moves.  Two
checkers ask the learner to count them, with the same model as
:func:`normcourse.bench.minimal_bytes`: every row-sized tensor read or
written once (``element_size`` bytes per element), each parameter read once
(``N`` elements, not once per row), and one float32 (4 bytes) per row for
each saved statistic.

- :func:`check_layer_norm_bytes` (chapter 6): ``fn(m, n, element_size)``, the
  bytes of the LayerNorm forward.
- :func:`check_add_norm_bytes` (chapter 7): ``fn(m, n, element_size, fused)``,
  the bytes of ``residual_out = x + residual; y = rms_norm(residual_out)``,
  in one kernel (``fused=True``) or as an add kernel, then an RMSNorm kernel.
- :func:`check_add_rms_norm_backward` (chapter 7): the backward of the fused
  op, ``fn(x, residual, weight, eps, dy, dres) -> (dx, dresidual, dweight)``,
  checked against float64 autograd.
"""

from __future__ import annotations

from typing import Callable

import torch

from normcourse.exercises.feedback import (
    SECOND_EPS, Mistake, Wrong, as_number, call_learner, checker, close, compare, expect_tensor,
    float32_error, generator, ignores_eps, is_mistake, max_error,
)

__all__ = ["layer_norm_bytes", "add_norm_bytes", "check_layer_norm_bytes",
           "check_add_norm_bytes", "check_add_rms_norm_backward"]

_CASES = ((4096, 4096, 2), (4096, 1024, 4), (1, 1, 2), (300, 768, 1))


def layer_norm_bytes(m: int, n: int, element_size: int) -> int:
    """Bytes the LayerNorm forward moves: x in, y out, weight and bias, mean and rstd."""
    return 2 * m * n * element_size + 2 * n * element_size + 2 * m * 4


def add_norm_bytes(m: int, n: int, element_size: int, fused: bool) -> int:
    """Bytes of ``s = x + residual; y = rms_norm(s)`` (forward), fused or not.

    Fused: read x and residual, write residual_out and y (4 row passes).
    Unfused: the add reads x and residual and writes s (3), then RMSNorm reads
    s and writes y (2).  Both read the weight once and write rstd (4 bytes/row).
    """
    rows = 4 if fused else 5
    return rows * m * n * element_size + n * element_size + m * 4


def _count(fn, *args) -> int:
    """The learner's byte count for one shape, as an int (NumPy and tensor integers too)."""
    return as_number(call_learner(fn, *args, name="your function"), "your count of bytes",
                     whole=True, shape_hint="count the bytes of the whole operation: one number.")


# Known wrong ways to count the LayerNorm forward, as formulas of (m, n, element_size).
# A mistake is named only when the learner's count follows its formula on *every*
# test shape: on a single shape two of them can give the same number (with
# element_size 2, two float32 statistics in element_size bytes each weigh as much as
# one float32 statistic).
_LN_BYTES_MISTAKES = (
    (lambda m, n, e: 2 * m * n * e,
     "you counted x and y but not the weight, the bias, or the saved mean and rstd."),
    (lambda m, n, e: 2 * m * n * e + 2 * n * e,
     "the saved statistics are missing: the forward writes a float32 mean and rstd per row "
     "(8 bytes per row) for the backward."),
    (lambda m, n, e: 2 * m * n * e + 2 * m * 4,
     "the weight and bias are missing: each is read once (N elements)."),
    (lambda m, n, e: 4 * m * n * e + 2 * m * 4,
     "you read the weight and bias once per row: a parameter is N elements, read once."),
    (lambda m, n, e: 2 * m * n * e + 2 * n * e + 2 * m * e,
     "the statistics are float32 (4 bytes each), whatever the input's dtype."),
    (lambda m, n, e: m * n * e + 2 * n * e + 2 * m * 4,
     "count the output too: y is written (M x N elements)."),
    (lambda m, n, e: 2 * m * n * e + 2 * n * e + m * 4,
     "LayerNorm saves two statistics per row (mean and rstd)."),
    (lambda m, n, e: 2 * m * n + 2 * n + 2 * m,
     "you counted elements, not bytes."),
    (lambda m, n, e: layer_norm_bytes(m, n, e) // e,
     "you counted elements, not bytes."),
)


@checker
def check_layer_norm_bytes(fn: Callable) -> str:
    """Check ``fn(m, n, element_size)``: the bytes the LayerNorm forward must move."""
    counts = [(case, _count(fn, *case)) for case in _CASES]
    wrong = [(case, got) for case, got in counts if got != layer_norm_bytes(*case)]
    if not wrong:
        return ("check_layer_norm_bytes: your count matches on 4 shapes and dtypes "
                "(x, y, weight, bias and two float32 statistics per row).")
    (m, n, e), got = wrong[0]
    label = f"M={m}, N={n}, element_size={e}"
    hint = "x in and y out are M*N elements each; weight and bias N each; 2 float32 per row."
    named = {what for formula, what in _LN_BYTES_MISTAKES
             if all(formula(*case) == count for case, count in counts)}
    if len(named) == 1:
        what = named.pop()
        raise Mistake(f"{what} (for {label})",
                      "multiply by element_size (4 bytes per float32 statistic)."
                      if "elements, not bytes" in what else hint)
    raise Mistake(f"for {label} you counted {got:,} bytes; the forward moves "
                  f"{layer_norm_bytes(m, n, e):,}.", hint)


def _add_norm_count(rows_fused=4, rows_unfused=5, weight=lambda m, n, e: n * e,
                    stats=lambda m, n, e: 4 * m, unit=None):
    """A byte count of add + RMSNorm with one part swapped: how a near miss counts."""
    def count(m, n, e, fused):
        size = e if unit is None else unit
        rows = rows_fused if fused else rows_unfused
        return rows * m * n * size + weight(m, n, size) + stats(m, n, size)
    return count


# Known wrong counts of add + RMSNorm, as functions of (m, n, element_size, fused), with
# what is wrong and a hint.  Named only when the learner's counts follow one of them on
# every shape, fused and unfused (on one shape two of them can coincide).
_ADD_NORM_MISTAKES = (
    (_add_norm_count(rows_fused=3),
     "the fused kernel must also write residual_out.",
     "the next block's skip connection needs x + residual: the fused kernel reads 2 row "
     "tensors and writes 2."),
    (_add_norm_count(rows_unfused=4),
     "your unfused count equals the fused one.",
     "unfused, the sum s is written by the add kernel and read back by the norm kernel: one "
     "more row pass."),
    (_add_norm_count(rows_unfused=6),
     "unfused, you counted a read of x and residual by the norm kernel, or s written twice.",
     "add: read x, residual, write s (3). RMSNorm: read s, write y (2)."),
    (_add_norm_count(rows_fused=5, rows_unfused=4),
     "your fused and unfused counts are swapped: fusing saves a row pass.",
     "fused: 4 row passes; unfused: 3 in the add and 2 in the norm."),
    (_add_norm_count(weight=lambda m, n, e: 0, stats=lambda m, n, e: 0),
     "the weight (N elements, read once) and the float32 rstd per row are missing.",
     "add n * element_size + m * 4."),
    (_add_norm_count(weight=lambda m, n, e: 0),
     "the weight is missing: the norm reads it once (N elements of element_size bytes).",
     "add n * element_size."),
    (_add_norm_count(stats=lambda m, n, e: 0),
     "the saved rstd is missing: the norm writes one float32 (4 bytes) per row for the "
     "backward.", "add 4 * m."),
    (_add_norm_count(weight=lambda m, n, e: m * n * e),
     "you read the weight once per row: it is N elements, read once.",
     "the weight costs n * element_size, not m * n * element_size."),
    (_add_norm_count(stats=lambda m, n, e: m * e),
     "the rstd is float32 (4 bytes per row), whatever the input's dtype.",
     "4 * m, not m * element_size."),
    (_add_norm_count(stats=lambda m, n, e: 8 * m),
     "RMSNorm saves one statistic per row (rstd), not two: it has no mean.",
     "4 * m bytes of rstd."),
    (_add_norm_count(weight=lambda m, n, e: 4 * n),
     "the weight has the input's dtype (element_size bytes per element), not float32.",
     "n * element_size."),
    (_add_norm_count(weight=lambda m, n, e: 2 * n * e),
     "RMSNorm has one parameter, the weight (no bias), read once.",
     "n * element_size."),
    (_add_norm_count(weight=lambda m, n, e: n),
     "the weight is counted in elements, not bytes: N elements of element_size bytes each.",
     "n * element_size."),
    (_add_norm_count(stats=lambda m, n, e: m),
     "the rstd is counted as one byte per row; it is one float32, 4 bytes, per row.",
     "4 * m."),
    (_add_norm_count(unit=1, stats=lambda m, n, e: m),
     "you counted elements, not bytes.",
     "multiply by element_size (4 bytes per float32 rstd)."),
)

_ADD_NORM_HINT = ("count row-sized tensors (M*N elements each): fused reads 2 and writes 2; "
                  "unfused 3 in the add and 2 in the norm. Then the weight once and 4 bytes of "
                  "rstd per row.")


@checker
def check_add_norm_bytes(fn: Callable) -> str:
    """Check ``fn(m, n, element_size, fused)``: bytes of add + RMSNorm, fused or unfused."""
    counts = [((m, n, e, fused), _count(fn, m, n, e, fused))
              for m, n, e in _CASES for fused in (True, False)]
    wrong = [(case, got) for case, got in counts if got != add_norm_bytes(*case)]
    if wrong:
        (m, n, e, fused), got = wrong[0]
        label = f"M={m}, N={n}, element_size={e}"
        named = [(what, hint) for formula, what, hint in _ADD_NORM_MISTAKES
                 if all(formula(*case) == count for case, count in counts)]
        if len(named) == 1:
            what, hint = named[0]
            raise Mistake(f"{what[:-1]} (for {label}).", hint)
        kind = "fused" if fused else "unfused"
        raise Mistake(f"{kind}, for {label}, you counted {got:,} bytes; it moves "
                      f"{add_norm_bytes(m, n, e, fused):,}.", _ADD_NORM_HINT)
    saved = add_norm_bytes(4096, 4096, 2, False) - add_norm_bytes(4096, 4096, 2, True)
    return (f"check_add_norm_bytes: fused and unfused counts match on 4 shapes; at M=N=4096 in "
            f"bfloat16 fusing saves {saved:,} bytes per forward.")


def _reference_backward(x, r, w, eps, dy, dres):
    x64, r64, w64 = (t.detach().double().requires_grad_(True) for t in (x, r, w))
    s = x64 + r64
    y = s * torch.rsqrt((s * s).mean(-1, keepdim=True) + eps) * w64
    torch.autograd.backward([y, s], [dy.double(), dres.double()])
    return x64.grad, r64.grad, w64.grad


def _formula_backward(x, r, w, eps, dy, dres):
    """The hand-derived backward in the inputs' own dtype (to measure float32's error)."""
    s = x + r
    rstd = torch.rsqrt((s * s).mean(-1, keepdim=True) + eps)
    x_hat = s * rstd
    g = dy * w
    ds = rstd * (g - x_hat * (g * x_hat).mean(-1, keepdim=True)) + dres
    return ds, ds, (dy * x_hat).reshape(-1, s.shape[-1]).sum(0)


def _unpack(out):
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise Mistake("your function should return three tensors: (dx, dresidual, dweight).",
                      "return dx, dresidual, dweight")
    return out


def _variant_backward(x, r, w, eps, dy, dres, *, residual=True, eps_at="inside", weight=True,
                      projection=1, centre=False, with_dres=True, dweight="x_hat",
                      layer_norm=False, variance=False):
    """The hand-derived backward in float64 with one deliberate mistake (for diagnosis).

    ``projection``: the sign of the term x_hat * mean(g * x_hat) (0 leaves it out);
    ``layer_norm``: LayerNorm's statistics and backward instead of RMSNorm's;
    ``variance``: rstd from the variance of s (its mean subtracted) instead of mean(s**2).
    """
    x, r, w, dy, dres = (t.double() for t in (x, r, w, dy, dres))
    s = x + r if residual else x
    if layer_norm:
        s, centre = s - s.mean(-1, keepdim=True), True
    ms = (s * s).mean(-1, keepdim=True) if not variance else s.var(-1, keepdim=True,
                                                                     unbiased=False)
    rstd = {"inside": torch.rsqrt(ms + eps), "missing": torch.rsqrt(ms),
            "outside": 1 / (ms.sqrt() + eps)}[eps_at]
    x_hat = s * rstd
    g = dy * w if weight else dy
    inner = g - projection * x_hat * (g * x_hat).mean(-1, keepdim=True)
    if centre:
        inner = inner - g.mean(-1, keepdim=True)
    ds = rstd * inner + (dres if with_dres else 0)
    rows = {"x_hat": dy * x_hat, "s": dy * s, "g": g * x_hat}[dweight].reshape(-1, s.shape[-1])
    return ds, ds, rows.sum(0)


def _backward_wrongs(x, r, w, eps, dy, dres):
    """The known wrong backwards; each value is the wrong (dx, dresidual, dweight), where a
    None leaves that output as the reference has it."""
    args = (x, r, w, eps, dy, dres)

    def variant(**mistake):
        return lambda: _variant_backward(*args, **mistake)

    return [
        Wrong("you normalized x alone: the norm reads the sum s = x + residual.",
              "s = x + residual; rstd and x_hat come from s.", variant(residual=False)),
        Wrong("dy and dres are swapped: dy is the gradient of y (the norm's output), dres the "
              "gradient of residual_out.", "ds = rstd * (g - x_hat * mean(g * x_hat)) + dres, "
              "g = dy * weight.", lambda: _variant_backward(x, r, w, eps, dres, dy)),
        Wrong("eps is missing from rstd.", "rstd = 1 / sqrt(mean(s**2) + eps).",
              variant(eps_at="missing")),
        Wrong("eps is outside the square root: rstd = 1 / sqrt(mean(s**2) + eps), not "
              "1 / (sqrt(mean(s**2)) + eps).", "put eps inside the square root, as in the "
              "forward.", variant(eps_at="outside")),
        Wrong("the weight is missing from dx: the gradient that enters the norm is "
              "g = dy * weight.",
              "g = dy * weight, then ds = rstd * (g - x_hat * mean(g * x_hat)) + dres.",
              variant(weight=False)),
        Wrong("the term x_hat * mean(g * x_hat) is missing: rstd depends on s too, so part of "
              "the gradient flows back through it.",
              "ds = rstd * (g - x_hat * mean(g * x_hat, -1)) + dres.", variant(projection=0)),
        Wrong("the term x_hat * mean(g * x_hat) has the wrong sign: it is subtracted from g.",
              "ds = rstd * (g - x_hat * mean(g * x_hat)) + dres.", variant(projection=-1)),
        Wrong("you also subtracted mean(g): that is LayerNorm's backward. RMSNorm subtracts no "
              "mean, so its backward has no mean(g) term.",
              "ds = rstd * (g - x_hat * mean(g * x_hat)) + dres.", variant(centre=True)),
        Wrong("you derived LayerNorm's backward (the mean subtracted from s, its variance in "
              "rstd); RMSNorm divides s by its root mean square and subtracts no mean.",
              "rstd = 1 / sqrt(mean(s**2) + eps), x_hat = s * rstd, ds = rstd * (g - x_hat * "
              "mean(g * x_hat)) + dres.", variant(layer_norm=True)),
        Wrong("rstd comes from the variance of s (its mean subtracted); RMSNorm's rstd uses the "
              "mean of s**2.", "rstd = 1 / sqrt(mean(s**2) + eps).", variant(variance=True)),
        Wrong("dweight uses s; it uses the normalized x_hat = s * rstd.",
              "dweight = sum over all rows of dy * x_hat.", variant(dweight="s")),
        Wrong("dweight includes the weight itself: it is the sum of dy * x_hat, not of "
              "dy * weight * x_hat.", "dweight = sum over all rows of dy * x_hat.",
              variant(dweight="g")),
        Wrong("dweight is averaged over the rows; the weight is used by every row, so its "
              "gradient is the sum.", "dweight = (dy * x_hat).reshape(-1, N).sum(0).",
              lambda: (None, None, _variant_backward(*args)[2] / (x.numel() // x.shape[-1]))),
    ]


_USED_AUTOGRAD = object()   # what _without_autograd returns when the learner called autograd


def _without_autograd(fn: Callable) -> Callable:
    """``fn`` run in inference mode, where autograd cannot work, as the exercise asks.

    Autograd's error comes from inside torch; it is turned into a marker so that the
    checker can say what happened instead of quoting a line of torch's code.
    """
    def run(*args):
        with torch.inference_mode():
            try:
                return fn(*args)
            except RuntimeError as err:
                if "require grad" in str(err) or "nference" in str(err):
                    return _USED_AUTOGRAD
                raise
    return run


def _named(what: str, label: str) -> str:
    return f"{what[:-1]} (on {label})."


@checker
def check_add_rms_norm_backward(fn: Callable) -> str:
    """Check ``fn(x, residual, weight, eps, dy, dres) -> (dx, dresidual, dweight)``."""
    g = generator(2607)
    shapes = ((4, 16), (2, 3, 40), (5, 1))
    for shape in shapes:
        n = shape[-1]
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        r = torch.randn(*shape, generator=g, dtype=torch.float64) * 2
        # one row of small values, where mean(s**2) is of the order of eps: eps must sit
        # where the forward puts it; two eps, so that a constant of the learner's own shows
        eps = 1e-3 if len(shape) == 3 else 1e-6
        if shape == (4, 16):
            x[1], r[1] = x[1] * 1e-3, r[1] * 1e-3
        elif len(shape) == 3:
            x[0, 1], r[0, 1] = x[0, 1] * 0.02, r[0, 1] * 0.02
        w = torch.randn(n, generator=g, dtype=torch.float64) * 0.5 + 1
        dy = torch.randn(*shape, generator=g, dtype=torch.float64)
        dres = torch.randn(*shape, generator=g, dtype=torch.float64)
        out = call_learner(_without_autograd(fn), x, r, w, eps, dy, dres, name="your backward")
        if out is _USED_AUTOGRAD:
            raise Mistake("your backward calls autograd (torch.autograd.grad or .backward()); the "
                          "exercise asks for it by hand, and autograd is switched off in this "
                          "check.",
                          "ds = rstd * (g - x_hat * mean(g * x_hat)) + dres with g = dy * weight; "
                          "dx = dresidual = ds; dweight = sum over rows of dy * x_hat.")
        dx, dr, dw = _unpack(out)
        label = f"the {'x'.join(map(str, shape))} input"
        ref_dx, ref_dr, ref_dw = _reference_backward(x, r, w, eps, dy, dres)
        expect_tensor(dx, x, name="dx")
        expect_tensor(dr, r, name="dresidual")
        expect_tensor(dw, w, name="dweight",
                      shape_hint="dweight has the weight's shape (N,): sum over every leading "
                                 "dimension.")
        # float64 inputs, but float32 math inside (cast back) is fine: allow a few times
        # the error the same formula makes in float32 on this input, per output.
        tol_dx, tol_dr, tol_dw = (4 * err + 1e-9 for err in
                                  float32_error(_formula_backward, x, r, w, eps, dy, dres))
        ok_dw, ok_dx = close(dw, ref_dw, atol=tol_dw), close(dx, ref_dx, atol=tol_dx)
        if not (ok_dw and ok_dx):
            for wrong in _backward_wrongs(x, r, w, eps, dy, dres):
                m_dx, _, m_dw = wrong.value()
                dx_fits = ok_dx if m_dx is None else is_mistake(dx, m_dx, ref_dx, tol_dx) or \
                    (ok_dx and close(m_dx, ref_dx, atol=tol_dx))
                dw_fits = is_mistake(dw, m_dw, ref_dw, tol_dw) or \
                    (ok_dw and close(m_dw, ref_dw, atol=tol_dw))
                if dx_fits and dw_fits:
                    raise Mistake(_named(wrong.what, label), wrong.hint)
        other = _reference_backward(x, r, w, SECOND_EPS, dy, dres)

        def ignored(i, got, tol):  # the eps-ignored mistake, seen in output number i
            rerun = _without_autograd(fn)
            return ignores_eps(lambda e: rerun(x, r, w, e, dy, dres)[i], got,
                               (ref_dx, ref_dr, ref_dw)[i], other[i], eps, tol,
                               name=f"your backward (on {label})")

        compare(dw, ref_dw, tol_dw, [ignored(2, dw, tol_dw)], name="dweight",
                otherwise=Mistake(
                    f"dweight is wrong on {label} (max error {max_error(dw, ref_dw):.3g}).",
                    "dweight = sum over all rows of dy * x_hat, with x_hat = s * rstd and "
                    "s = x + residual."))
        compare(dx, ref_dx, tol_dx, [
            Wrong(f"dx is missing the gradient of residual_out on {label}.",
                  "residual_out = x + residual is an output too: add dres to the gradient that "
                  "comes back through the norm.", lambda: ref_dx - dres),
            Wrong(f"dx is only dres on {label}: the path through the norm is missing.",
                  "ds = rstd * (g - x_hat * mean(g * x_hat)) + dres, g = dy * weight.",
                  lambda: dres),
            ignored(0, dx, tol_dx),
        ], name="dx", otherwise=Mistake(
            f"dx is wrong on {label} (max error {max_error(dx, ref_dx):.3g}).",
            "ds = rstd * (g - x_hat * mean(g * x_hat, -1)) + dres, with g = dy * weight; then "
            "dx = ds."))
        if not close(dr, ref_dr, atol=tol_dr) and (dr == 0).all():
            raise Mistake(f"dresidual is zero on {label}, but the residual feeds the sum too.",
                          "s = x + residual: ds/dx = ds/dresidual = 1, so dresidual = dx.")
        compare(dr, ref_dr, tol_dr, [
            Wrong(f"dresidual is only dres on {label}: the residual feeds the norm too, so it "
                  "gets the whole gradient of s, the same as x.",
                  "s = x + residual: dresidual = dx = ds.", lambda: dres),
        ], name="dresidual", otherwise=Mistake(
            f"dresidual is wrong on {label} (max error {max_error(dr, ref_dr):.3g}).",
            "s = x + residual: the residual gets exactly the same gradient as x."))
    return ("check_add_rms_norm_backward: dx, dresidual and dweight match float64 autograd on "
            "3 shapes; x and the residual get the same gradient.")
