"""Checker for the chapter "LayerNorm in Triton": the learner's RMSNorm forward kernel.

The learner writes a ``@triton.jit`` kernel with this signature, one program
per row::

    @triton.jit
    def rms_norm_kernel(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
        ...

``X`` and ``Y`` point to ``(M, N)`` rows ``stride`` elements apart, ``W`` to
the ``(N,)`` weight.  :func:`check_rms_norm_kernel` launches it itself (the
interpreter on CPU, the GPU on CUDA) and explains what went wrong.

Mistakes are made visible, and harmless:

- every row lives inside a bigger buffer, so ``stride > N``: a kernel that
  steps from row to row by ``N`` reads and writes the wrong places;
- the gaps after the rows of ``X`` are NaN (except in the first case, where
  they hold ordinary numbers so that a wrong stride gives a recognisable
  answer): a load without its mask reads NaN and the row's result turns NaN;
- ``Y`` starts out filled with a sentinel, so we see which elements the kernel
  stored, whether it stored outside the rows, and whether it stored at all;
- one row is all zeros and one has a small RMS with a large eps, which shows
  whether eps is inside the square root;
- on the Triton interpreter, every address a ``tl.load`` reads is recorded, so
  a weight load without its mask is seen even though the masked store throws
  those lanes away, and so is an X load without its mask whose extra lanes
  ``tl.where`` replaces afterwards.  On a GPU those reads cannot be seen and are
  not checked;
- a masked ``tl.load`` without ``other=`` leaves its masked-off lanes undefined
  on a GPU, while the interpreter fills them with 0 and hides the bug: here the
  interpreter fills them with NaN instead, so they show wherever they reach a
  result (the sum of squares), and do no harm where they do not (a weight lane
  that only meets a padding lane the masked store drops).

The tensors live where the kernel runs: on the CPU for a kernel the
interpreter runs, on the GPU for a compiled one (see :func:`_device_for`).

Nothing outside our own allocations is ever read or written.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import textwrap
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from normcourse.exercises.feedback import (
    Mistake, Wrong, checker, close, compare, generator, max_error,
)

__all__ = ["check_rms_norm_kernel", "launch_rms_norm_kernel"]

_GAP = 16  # elements after each row's block (and after the weight's)
# Y is filled with this before the launch: no output of RMSNorm on the test rows comes
# near it (and it is exact in every float dtype), so an element still equal to it was
# never stored.
_UNWRITTEN = 2.0 ** 15
# A second sentinel: a wrong kernel can store _UNWRITTEN itself by chance (garbage
# values do), so an element counts as unwritten only if a launch on a buffer filled
# with this one leaves it too.
_UNWRITTEN_AGAIN = -3.0 * 2.0 ** 13


def _padded(n: int) -> int:
    """Room for a whole block (the next power of two >= n) plus a gap."""
    return _block(n) + _GAP


def _block(n: int) -> int:
    """BLOCK_N for a row of n elements: the next power of two, as triton.next_power_of_2."""
    return 1 << (n - 1).bit_length()


def _guarded_rows(x: torch.Tensor, gaps: torch.Tensor | None = None):
    """Rows of x inside a bigger buffer: returns (buffer, view, stride).

    The buffer holds ``gaps`` (same shape) around the rows, or NaN when None.
    """
    m, n = x.shape
    stride = _padded(n)
    if gaps is None:
        buf = torch.full((m + 1, stride), float("nan"), dtype=x.dtype, device=x.device)
    else:
        buf = gaps.to(x.device, x.dtype).clone()
    view = buf[:m, :n]
    view.copy_(x)
    return buf, view, stride


@dataclass
class _Launch:
    """Everything a launch left behind, for the diagnosis."""

    y: torch.Tensor             # the (M, N) output rows, as a view of ybuf
    ybuf: torch.Tensor          # the whole output buffer, gaps included
    xbuf: torch.Tensor          # the whole input buffer
    stride: int
    weight_reads: np.ndarray | None  # element offsets read from W (interpreter only)
    x_reads: np.ndarray | None = None  # element offsets read from X's buffer (interpreter only)
    undefined_lanes: bool = False    # a masked load without other= had masked-off lanes
    written: torch.Tensor | None = None  # which elements of ybuf the kernel stored


# The bits of a quiet NaN in each float type the interpreter stores (bfloat16 as uint16).
_NAN_BITS = {"fp16": np.float16("nan"), "fp32": np.float32("nan"), "fp64": np.float64("nan"),
             "bf16": np.uint16(0x7FC0)}


def _undefined_lanes(ptrs, mask):
    """For a masked load without ``other=``: its masked-off lanes filled with NaN.

    None when no lane is masked off or the type has no NaN (an integer load).
    """
    from triton.runtime.interpreter import TensorHandle

    lanes = np.broadcast_to(np.asarray(mask.data, dtype=bool), np.shape(ptrs.data))
    dtype_tt = ptrs.get_element_ty()
    nan = _NAN_BITS.get(getattr(dtype_tt, "name", str(dtype_tt)))
    if lanes.all() or nan is None:
        return None
    return TensorHandle(np.full(np.shape(ptrs.data), nan, dtype=type(nan)), dtype_tt)


@dataclass
class _LoadRecord:
    """What the interpreter's loads did during one launch."""

    addresses: list = field(default_factory=list)  # arrays of addresses read (None: unknown)
    undefined_lanes: bool = False                  # a load without other= had masked lanes


@contextlib.contextmanager
def _recorded_loads():
    """On the Triton interpreter, record every tl.load, and poison undefined lanes.

    Yields a :class:`_LoadRecord` whose ``addresses`` fill up with arrays of the
    addresses each load read (masked-off lanes left out; None for a load the
    hook could not read), or None where the interpreter has no hook for it
    (another Triton version): then nothing is checked.  A masked load without
    ``other=`` gets NaN in its masked-off lanes, as undefined as a GPU's; every
    other load is left exactly as the kernel wrote it.
    """
    try:
        from triton.runtime.interpreter import interpreter_builder as builder
        original = type(builder).create_masked_load
    except (ImportError, AttributeError):
        yield None
        return
    record_of = _LoadRecord()

    def record(ptrs, mask, other=None, *args, **kwargs):
        try:
            addresses = np.asarray(ptrs.data)
            if mask is not None:
                addresses = addresses[np.broadcast_to(np.asarray(mask.data, dtype=bool),
                                                      addresses.shape)]
            record_of.addresses.append(addresses.astype(np.int64).ravel())
        except Exception:  # a load this hook does not understand: the record is incomplete
            record_of.addresses.append(None)
        if other is None and mask is not None:
            try:
                poison = _undefined_lanes(ptrs, mask)
            except Exception:  # an interpreter this hook does not understand: leave it be
                poison = None
            if poison is not None:
                other = poison
                record_of.undefined_lanes = True
        return original(builder, ptrs, mask, other, *args, **kwargs)

    builder.create_masked_load = record
    try:
        yield record_of
    finally:
        del builder.create_masked_load  # back to the class's own method


def _interpreted(kernel) -> bool:
    """Whether the Triton interpreter runs ``kernel`` (decided when it was decorated)."""
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:
        return False
    return isinstance(kernel, InterpretedFunction)


def _device_for(kernel) -> str:
    """Where the test tensors must live: the CPU for the interpreter, else the GPU.

    A compiled kernel reads GPU memory; a kernel without a GPU to run on cannot
    be checked, and the learner is told how to switch the interpreter on.
    """
    if _interpreted(kernel):
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    raise Mistake("Triton was loaded for a GPU, but this machine has none, so your kernel cannot "
                  "run here.",
                  "import normcourse before triton (it switches Triton's interpreter on when "
                  "there is no GPU), then restart the kernel and run the cells again.")


def _launch(kernel, x, weight, eps, gaps=None, unwritten=_UNWRITTEN) -> _Launch:
    import triton

    m, n = x.shape
    xbuf, xv, stride = _guarded_rows(x, gaps)
    wbuf = torch.full((_padded(n),), float("nan"), dtype=weight.dtype, device=x.device)
    wbuf[:n].copy_(weight)
    ybuf = torch.full((m + 1, stride), unwritten, dtype=x.dtype, device=x.device)
    watch = _recorded_loads() if _interpreted(kernel) and x.device.type == "cpu" \
        else contextlib.nullcontext()
    # NumPy's warnings about the learner's 0/0 would only repeat what the diagnosis says.
    with watch as loads, np.errstate(all="ignore"):
        kernel[(m,)](xv, ybuf, wbuf, stride, n, eps, BLOCK_N=triton.next_power_of_2(n))
    reads = x_reads = None
    if loads is not None and all(a is not None for a in loads.addresses):
        seen = loads.addresses
        addresses = np.concatenate(seen) if seen else np.zeros(0, dtype=np.int64)
        reads, x_reads = (_offsets_in(addresses, buf) for buf in (wbuf, xbuf))
    return _Launch(ybuf[:m, :n], ybuf, xbuf, stride, reads, x_reads,
                   undefined_lanes=loads is not None and loads.undefined_lanes,
                   written=ybuf != unwritten)  # a stored NaN counts as written, too


def _offsets_in(addresses: np.ndarray, buf: torch.Tensor) -> np.ndarray:
    """The element offsets into ``buf`` of the byte ``addresses`` that fall inside it."""
    offsets = addresses - buf.data_ptr()
    inside = (offsets >= 0) & (offsets < buf.numel() * buf.element_size())
    return offsets[inside] // buf.element_size()


def launch_rms_norm_kernel(kernel, x, weight, eps=1e-6):
    """Launch a learner's ``rms_norm_kernel`` on 2-D ``x``; return ``(y, out_buffer, stride)``."""
    launch = _launch(kernel, x, weight, eps)
    return launch.y, launch.ybuf, launch.stride


def _reference(x, w, eps):
    x64 = x.double()
    return x64 * torch.rsqrt((x64 * x64).mean(-1, keepdim=True) + eps) * w.double()


def _expect_kernel(kernel):
    """A plain Python function cannot be launched: say that the decorator is missing."""
    if hasattr(kernel, "__getitem__"):  # JITFunction and InterpretedFunction: kernel[grid](...)
        return
    if inspect.isfunction(kernel):
        raise Mistake(f"{kernel.__name__} is a plain Python function, not a Triton kernel: the "
                      "@triton.jit decorator is missing, so it cannot be launched with "
                      "kernel[grid](...).",
                      "put @triton.jit on the line above `def rms_norm_kernel(...)`, run the "
                      "cell again, then the checker.")
    raise Mistake(f"check_rms_norm_kernel needs a @triton.jit kernel, got "
                  f"{type(kernel).__name__}.",
                  "pass the kernel itself: check_rms_norm_kernel(rms_norm_kernel).")


def _masked_loads_without_other(kernel) -> list[tuple[str, str | None]]:
    """The kernel's ``tl.load(ptr, mask=...)`` calls without ``other=``, in source order.

    Each is (its source line, the kernel argument its pointer starts from, e.g. "X").
    """
    fn = getattr(kernel, "fn", kernel)
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return []
    lines = source.splitlines()
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load" and node.args):
            continue
        keywords = {k.arg for k in node.keywords}
        masked = "mask" in keywords or len(node.args) >= 2
        if masked and "other" not in keywords and len(node.args) < 3:
            root = node.args[0]
            while isinstance(root, ast.BinOp):   # X + row * stride + cols -> X
                root = root.left
            line = lines[node.lineno - 1].split("#")[0].strip()
            found.append((node.lineno, line, root.id if isinstance(root, ast.Name) else None))
    return [(line, root) for _, line, root in sorted(found)]


def _first_argument(kernel) -> str | None:
    """The name of the kernel's first parameter (the input rows, ``X``)."""
    try:
        return next(iter(inspect.signature(getattr(kernel, "fn", kernel)).parameters))
    except (TypeError, ValueError, StopIteration):
        return None


def _undefined_lanes_mistake(kernel, label) -> Mistake:
    x_name = _first_argument(kernel)
    loads = sorted(_masked_loads_without_other(kernel), key=lambda load: load[1] != x_name)
    where = f" (`{loads[0][0]}`)" if loads else ""
    return Mistake(f"your masked tl.load has no other={where}: its masked-off lanes are "
                   f"undefined on a GPU (the checker fills them with NaN, the interpreter "
                   f"would give 0 and hide it), and on the {label} they reach the sum of "
                   "squares.",
                   "load with tl.load(X + row * stride + cols, mask=mask, other=0.0), so the "
                   "padding lanes add 0 to the sum.")


def _run(kernel, x, w, eps, label, gaps=None) -> _Launch:
    """Launch, and where the output still holds the sentinel, launch again to be sure."""
    launch = _run_once(kernel, x, w, eps, label, gaps, _UNWRITTEN)
    if not launch.written[:x.shape[0], :x.shape[1]].all():
        again = _run_once(kernel, x, w, eps, label, gaps, _UNWRITTEN_AGAIN)
        launch.written = launch.written | again.written
    return launch


def _run_once(kernel, x, w, eps, label, gaps, unwritten) -> _Launch:
    try:
        return _launch(kernel, x, w, eps, gaps, unwritten)
    except Exception as err:  # the learner's kernel failed to compile or run
        if "NotImplementedError" in f"{type(err).__name__}: {err}":
            raise Mistake("your kernel is not implemented yet.",
                          "replace `raise NotImplementedError` with the kernel body.") from None
        msg = str(err).strip().splitlines()
        raise Mistake(f"your kernel failed on the {label}: {type(err).__name__}: "
                      f"{msg[-1] if msg else ''}",
                      "check the signature rms_norm_kernel(X, Y, W, stride, N, eps, "
                      "BLOCK_N: tl.constexpr), and that shapes inside the kernel are BLOCK_N "
                      "long.") from None


# --------------------------------------------------------------------------
# What the kernel stored, and where
# --------------------------------------------------------------------------

def _check_stores(launch: _Launch, m: int, n: int, label: str):
    """Stores: none at all, rows N apart instead of stride, outside the rows, or missing."""
    written = launch.written
    if not written.any():
        raise Mistake(f"your kernel never stored anything on the {label}: the output is "
                      "exactly as it was before the launch.",
                      "end the kernel with tl.store(Y + row * stride + cols, y, mask=mask).")
    rows = written[:m, :n]
    flat = written.flatten()
    if m > 1 and flat[:m * n].all() and int(flat.sum()) == m * n and not rows.all():
        raise Mistake(f"your kernel stores row r at Y + r * N, but on the {label} the rows are "
                      f"{launch.stride} elements apart (stride = {launch.stride}, as for a slice "
                      "of a wider matrix).",
                      "row r starts at Y + row * stride (and X + row * stride); N is only the "
                      "length of a row.")
    outside = written.clone()
    outside[:m, :n] = False
    if outside.any():
        nb = _block(n)
        if nb > n:
            raise Mistake(f"your kernel wrote outside the rows on the {label}: N = {n} is not a "
                          f"power of two, so the block has BLOCK_N = {nb} lanes and the last "
                          f"{nb - n} of them are padding.",
                          "pass mask=cols < N to tl.store too.")
        raise Mistake(f"your kernel wrote outside the rows on the {label}.",
                      "store to Y + row * stride + cols, the same offsets you load x from.")
    if not rows.all():
        missing = (~rows).any(-1).nonzero().flatten().tolist()
        raise Mistake(f"your kernel left part of the output unwritten on the {label} (rows "
                      f"{missing}).",
                      "one program per row: row = tl.program_id(0), and store all N columns "
                      "of that row.")


def _check_weight_reads(launch: _Launch, n: int, label: str):
    """Interpreter only: did a load read the weight past its N elements?"""
    if launch.weight_reads is not None and (launch.weight_reads >= n).any():
        nb = _block(n)
        raise Mistake(f"your kernel reads the weight past its N = {n} elements on the {label}: "
                      f"tl.load(W + cols) without a mask reads all BLOCK_N = {nb} lanes. The "
                      "masked store drops those lanes here, but past the end of a real tensor "
                      "such a read can crash the kernel.",
                      "load the weight with the row's mask: tl.load(W + cols, mask=cols < N, "
                      "other=0.0).")


def _check_x_reads(launch: _Launch, n: int, label: str):
    """Interpreter only: did a load read X past the N elements of a row?

    A load without its mask reads all BLOCK_N lanes; replacing them with tl.where
    afterwards gives the right numbers, but the read itself goes past the end of the
    last row, which on a GPU can be past the end of the tensor.
    """
    if launch.x_reads is None or not ((launch.x_reads % launch.stride) >= n).any():
        return
    nb = _block(n)
    raise Mistake(f"your kernel reads X past the end of each row on the {label}: a tl.load "
                  f"without a mask reads all BLOCK_N = {nb} lanes, N = {n} of which are the "
                  "row. Your output is right (the extra lanes are dropped or replaced "
                  "afterwards, e.g. with tl.where), but after the last row of a real tensor "
                  "that read leaves its memory and can crash the kernel or read another "
                  "tensor's data.",
                  "mask the load itself: tl.load(X + row * stride + cols, mask=cols < N, "
                  "other=0.0); then no tl.where is needed.")


# --------------------------------------------------------------------------
# What the kernel computed
# --------------------------------------------------------------------------

_FORMULA = "rstd = 1 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)."


def _wrong_formulas(x, w, eps, launch: _Launch, label: str) -> list[Wrong]:
    """The known mistakes of the kernel's math, each a value on this input."""
    m, n = x.shape
    x64, w64 = x.double(), w.double()
    ms = (x64 * x64).mean(-1, keepdim=True)
    on = f" (on the {label})"
    wrong = [
        Wrong("you used the sum of squares; RMSNorm uses their mean (divide by N, not "
              "BLOCK_N)." + on, _FORMULA, lambda: x64 * torch.rsqrt(ms * n + eps) * w64),
        Wrong("you divided by BLOCK_N instead of N: padding lanes are not features." + on,
              _FORMULA, lambda: x64 * torch.rsqrt(ms * n / _block(n) + eps) * w64),
        Wrong("the weight is missing." + on,
              "load W + cols (with the mask) and multiply: y = x * rstd * w.",
              lambda: _reference(x, torch.ones_like(w), eps)),
        Wrong("you subtracted the mean: that is LayerNorm." + on, _FORMULA,
              lambda: _reference(x - x.mean(-1, keepdim=True), w, eps)),
        Wrong("eps is added outside the square root: RMSNorm divides by sqrt(mean(x^2) + "
              "eps)." + on, _FORMULA, lambda: x64 / (ms.sqrt() + eps) * w64),
    ]
    if m > 1 and launch.stride > n:  # rows read N apart from the bigger buffer
        idx = torch.arange(m)[:, None] * n + torch.arange(n)[None, :]
        wrong.append(Wrong(f"your kernel loads row r from X + r * N, but the rows are "
                           f"{launch.stride} elements apart (stride = {launch.stride}, as for "
                           "a slice of a wider matrix)." + on,
                           "row r starts at X + row * stride; N is only the length of a row.",
                           lambda: _reference(launch.xbuf.flatten().cpu()[idx], w, eps)))
    return wrong


def _effective_eps(y, x, w) -> float | None:
    """The eps that ``y`` implies on the row where eps matters most (smallest nonzero RMS).

    There y = x * w / sqrt(mean(x^2) + eps_used), so eps_used = (x * w / y)^2 - mean(x^2).
    None when no row allows it.
    """
    x64, y64, w64 = x.double(), y.double(), w.double()
    ms = (x64 * x64).mean(-1)
    rows = (ms > 0).nonzero().flatten()
    if len(rows) == 0:
        return None
    r = rows[ms[rows].argmin()]
    usable = (x64[r] * w64 != 0) & (y64[r] != 0)
    if not usable.any():
        return None
    rstd = (y64[r][usable] / (x64[r][usable] * w64[usable])).median()
    used = float(1 / rstd ** 2 - ms[r]) if rstd > 0 else float("nan")
    return used if used >= 0 and used == used else None


def _explain_output(kernel, y, x, w, eps, label, launch: _Launch, atol: float, rtol: float):
    """Raise the Mistake that explains a wrong output ``y``."""
    y, x, w = y.cpu(), x.cpu(), w.cpu()  # the candidates are small: compare them on the CPU
    m, n = x.shape
    ref = _reference(x, w, eps)
    nan_rows = y.isnan().any(-1)
    zero_rows = (x == 0).all(-1)
    # On a GPU nothing poisons the lanes: name the load only when it is the likely cause.
    x_name = _first_argument(kernel)
    if launch.undefined_lanes or (not _interpreted(kernel) and _block(n) > n and any(
            root == x_name for _, root in _masked_loads_without_other(kernel))):
        raise _undefined_lanes_mistake(kernel, label)
    if nan_rows.any():
        if not (nan_rows & ~zero_rows).any():
            raise Mistake(f"your output is NaN on the all-zero row of the {label}: without eps "
                          "inside the square root, a zero row divides 0 by 0.", _FORMULA)
        if _block(n) > n and nan_rows.all():
            raise Mistake(f"your output on the {label} contains NaN: the kernel read past the end "
                          "of the row (the block has BLOCK_N lanes, N is smaller).",
                          "load with mask=cols < N and other=0.0, so padding lanes add nothing "
                          "to the sum of squares.")
        raise Mistake(f"your output on the {label} contains NaN (rows "
                      f"{nan_rows.nonzero().flatten().tolist()}).",
                      "NaN comes from 0/0, the square root of a negative number, or memory "
                      "outside the row (filled with NaN here); the interpreter runs print() "
                      "inside a kernel, so print the intermediate values of one row.")
    if (y == 0).all() and not (ref == 0).all():
        raise Mistake(f"your output on the {label} is all zeros.",
                      "store y = x * rstd * w, converted with .to(Y.dtype.element_ty).")
    wrong = Mistake(f"your output on the {label} is wrong (max error {max_error(y, ref):.3g}).",
                    "row = tl.program_id(0); cols = tl.arange(0, BLOCK_N); load X + row * "
                    "stride + cols; y = x * rstd * w.")
    # a known mistake is matched with ten times the tolerance (the kernel's float32 error
    # adds to the mistake's own)
    compare(y, ref, 10 * atol, _wrong_formulas(x, w, eps, launch, label)
            + _other_eps(y, x, w, eps, label), rtol=10 * rtol, otherwise=wrong)
    raise wrong  # within ten times the tolerance, but not within it


def _other_eps(y, x, w, eps, label) -> list[Wrong]:
    """The RMSNorm with the eps ``y`` implies (eps ** 2 named as such), if one fits."""
    used = _effective_eps(y, x, w)
    if used is None:
        return []
    wrongs = [Wrong(f"on the {label} your kernel behaves as if eps were {used:.2g}, but the "
                    f"eps argument is {eps:g}.",
                    "use the eps argument (not a constant of your own) inside the square "
                    "root: " + _FORMULA, lambda: _reference(x, w, used))]
    if abs(used - eps ** 2) < 0.1 * eps ** 2:
        wrongs.insert(0, Wrong(
            f"on the {label} your kernel behaves as if eps were {eps ** 2:.0e}, which is "
            f"eps ** 2: the eps argument is {eps:g}. Did you square eps, or use a constant of "
            "your own?", "use the eps argument itself inside the square root: " + _FORMULA,
            lambda: _reference(x, w, eps ** 2)))
    return wrongs


def _check_case(kernel, x, w, eps, label, atol, rtol, gaps=None):
    """Launch on one input and raise a Mistake for the first thing that is wrong."""
    m, n = x.shape
    launch = _run(kernel, x, w, eps, label, gaps)
    _check_stores(launch, m, n, label)
    if not close(launch.y, _reference(x, w, eps), atol=atol, rtol=rtol):
        _explain_output(kernel, launch.y, x, w, eps, label, launch, atol, rtol)
    _check_x_reads(launch, n, label)
    _check_weight_reads(launch, n, label)


def _math_case(g: torch.Generator):
    """4 x 64, a power of two: no mask needed, so only the math and the stride are tested.

    Row 1 is all zeros and row 2 has a small RMS, and eps = 1e-3 is large: eps
    missing gives NaN on row 1, eps outside the square root or a constant of the
    kernel's own changes row 2.  The gaps between rows hold ordinary numbers, so
    that rows read N apart give a wrong but finite answer we can recognise.
    """
    x = torch.randn(4, 64, generator=g) + 0.5
    x[1] = 0.0
    x[2] *= 0.02
    w = torch.randn(64, generator=g) * 0.5 + 1
    gaps = torch.randn(5, _padded(64), generator=g) + 0.5
    return x, w, 1e-3, gaps


@checker
def check_rms_norm_kernel(kernel: Callable) -> str:
    """Check a learner's ``@triton.jit`` RMSNorm forward kernel (see the module docstring)."""
    _expect_kernel(kernel)
    device = _device_for(kernel)
    g = generator(1910)

    x, w, eps, gaps = _math_case(g)
    _check_case(kernel, x.to(device), w.to(device), eps, "4 x 64 input", 1e-5, 1e-4,
                gaps=gaps)
    for (m, n, label) in ((5, 100, "5 x 100 input"), (3, 1, "3 x 1 input")):
        x = (torch.randn(m, n, generator=g) + 0.5).to(device)
        w = (torch.randn(n, generator=g) * 0.5 + 1).to(device)
        _check_case(kernel, x, w, 1e-6, label, 1e-5, 1e-4)

    # bfloat16: statistics must be computed in float32.
    x = (torch.randn(6, 200, generator=g) * 3).to(device, torch.bfloat16)
    w = (torch.randn(200, generator=g) * 0.5 + 1).to(device, torch.bfloat16)
    launch = _run(kernel, x, w, 1e-6, "bfloat16 input")
    _check_stores(launch, 6, 200, "bfloat16 input")
    ref = _reference(x, w, 1e-6)
    tol = 2 * max_error(torch.nn.functional.rms_norm(x, (200,), w, 1e-6), ref) + 3e-2
    if launch.undefined_lanes and launch.y.isnan().any():
        raise _undefined_lanes_mistake(kernel, "bfloat16 input")
    if launch.y.isnan().any():
        raise Mistake("your bfloat16 output contains NaN.",
                      "convert the loaded values to float32 with .to(tl.float32) before summing, "
                      "and the result back with .to(Y.dtype.element_ty).")
    if not close(launch.y, ref, atol=tol):
        raise Mistake(f"your bfloat16 output is off by {max_error(launch.y, ref):.3g} (allowed "
                      f"{tol:.2g}).",
                      "convert the loaded values to float32 with .to(tl.float32) before summing.")
    _check_x_reads(launch, 200, "bfloat16 input")
    _check_weight_reads(launch, 200, "bfloat16 input")
    where = "the GPU" if device == "cuda" else "the Triton interpreter (CPU)"
    return (f"check_rms_norm_kernel: your kernel is correct on 4 shapes, including N not a "
            f"power of two and bfloat16, with no access outside the rows (ran on {where}).")
