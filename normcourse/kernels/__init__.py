"""Triton kernels for LayerNorm, RMSNorm and the fused residual add + norm.

Functions (normalize over the last dimension, any leading shape, float32 /
float16 / bfloat16, differentiable in every tensor argument)::

    layer_norm(x, weight, bias, eps=1e-5)            -> y
    rms_norm(x, weight, eps=1e-6)                    -> y
    add_layer_norm(x, residual, weight, bias, eps)   -> (y, residual_out)
    add_rms_norm(x, residual, weight, eps)           -> (y, residual_out)

and the modules :class:`LayerNorm` / :class:`RMSNorm`, drop-ins for
``torch.nn.LayerNorm`` / ``torch.nn.RMSNorm``.

Every function takes ``backend="auto" | "triton" | "torch"``: the kernels
(compiled on CUDA, interpreted on CPU) or PyTorch's own fast kernels.  The
kernels' backward gives first derivatives only (``create_graph=True`` raises;
``backend="torch"`` differentiates twice), and the RMSNorm functions also take
``eps=None``, meaning ``torch.finfo(x.dtype).eps`` as in torch.

Layout, one concept per module: ``launch`` (block size, warps, row layout),
``validation`` (argument checks), ``triton_layer_norm`` and ``triton_rms_norm``
(kernels, launchers, autograd; the fused add lives with its norm),
``triton_norm_forward_looped`` / ``triton_norm_backward_looped`` (chunked
kernels for rows beyond 16384 / 8192 features: any N works, nothing spills),
``functional`` and ``modules`` (the public face), ``compile_report``
(ahead-of-time compilation for real GPUs: registers, spills, vector loads).

On a CPU the kernels run through Triton's interpreter, which rounds float32
to bfloat16 toward zero where a GPU rounds to nearest even: bfloat16 outputs
computed on CPU can differ from a GPU's by one unit in the last place.
"""

import normcourse  # noqa: F401  (must run before any @triton.jit definition)
from normcourse.kernels.functional import add_layer_norm, add_rms_norm, layer_norm, rms_norm
from normcourse.kernels.modules import LayerNorm, RMSNorm

__all__ = ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm", "LayerNorm", "RMSNorm"]
