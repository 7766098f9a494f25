"""Triton kernels for LayerNorm, RMSNorm and the fused residual add + norm.

Functions (normalize over the last dimension, any leading shape, float32 /
float16 / bfloat16, differentiable in every tensor argument)::

    layer_norm(x, weight, bias, eps=1e-5)            -> y
    rms_norm(x, weight, eps=1e-6)                    -> y
    add_layer_norm(x, residual, weight, bias, eps)   -> (y, residual_out)
    add_rms_norm(x, residual, weight, eps)           -> (y, residual_out)

and the modules :class:`LayerNorm` / :class:`RMSNorm`, drop-ins for
``torch.nn.LayerNorm`` / ``torch.nn.RMSNorm``.

Every function takes ``backend="auto" | "triton" | "torch"``:

- ``"auto"`` (default): the Triton kernels for float32 / float16 / bfloat16
  tensors on CUDA, PyTorch's own fused op everywhere else (CPU tensors,
  float64, no triton installed).  On a CPU the kernels could only run in
  Triton's interpreter, orders of magnitude slower than PyTorch, so "auto"
  never runs the interpreter.
- ``"triton"``: the kernels, compiled on CUDA and *interpreted* on CPU.  The
  kernel chapters, the checkers and the tests ask for it explicitly to run
  the kernels on a laptop.
- ``"torch"``: PyTorch's ``F.layer_norm`` / ``F.rms_norm``.

The kernels' backward gives first derivatives only (``create_graph=True``
raises; ``backend="torch"`` differentiates twice), and the RMSNorm functions
also take ``eps=None``, meaning ``torch.finfo(x.dtype).eps`` as in torch.

Layout, one concept per module: ``launch`` (block size, warps, register
caps, program counts, row layout), ``triton_norm`` (one row-in-registers kernel for LayerNorm and
RMSNorm, ``IS_RMS`` picks; the fused add is a flag too; launchers and
autograd), ``triton_norm_looped`` (chunked kernels for rows beyond 32768
features forward, 16384 if unaligned, and 8192 backward: any N works,
nothing spills),
``functional`` and ``modules`` (the public face), ``compile_report``
(ahead-of-time compilation for real GPUs: registers, spills, CTAs per SM,
vector loads).  The argument checks and the backend rule live with the
package's other checks, in :mod:`normcourse.checks`.

On a CPU the kernels run through Triton's interpreter, which rounds float32
to bfloat16 toward zero where a GPU rounds to nearest even: bfloat16 outputs
computed on CPU can differ from a GPU's by one unit in the last place.
"""

import normcourse  # noqa: F401  (must run before any @triton.jit definition)
from normcourse.kernels.functional import add_layer_norm, add_rms_norm, layer_norm, rms_norm
from normcourse.kernels.modules import LayerNorm, RMSNorm

__all__ = ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm", "LayerNorm", "RMSNorm"]
