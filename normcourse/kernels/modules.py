"""``nn.Module`` drop-ins for ``nn.LayerNorm`` and ``nn.RMSNorm`` backed by the kernels.

Same constructor arguments, same parameters and ``state_dict`` keys
(``weight``, ``bias``), so a checkpoint trained with torch's modules loads
into these and back.  A multi-dimensional ``normalized_shape`` is handled by
flattening the normalized dimensions into one row of ``N`` features.
"""

from __future__ import annotations

import torch

from normcourse import norms
from normcourse.kernels.functional import layer_norm, rms_norm
from normcourse.checks import check_backend_name, check_ends_with, check_tensor

__all__ = ["LayerNorm", "RMSNorm"]


def _rows(x: torch.Tensor, shape: tuple[int, ...], op: str) -> torch.Tensor:
    """Flatten the trailing ``shape`` dims of x into one feature dimension."""
    check_tensor(op, "x", x)
    check_ends_with(op, x, shape)
    return x if len(shape) == 1 else x.flatten(x.dim() - len(shape))


def _flat(p):
    return p.reshape(-1) if p is not None else None


# The parameters, their initial values and the constructor checks are those of
# the reference modules in normcourse.norms; only the forward differs, and the
# backend is checked here too, so a typo fails at construction, not at the
# first forward.

class LayerNorm(norms.LayerNorm):
    """Drop-in for ``torch.nn.LayerNorm``; ``backend`` as in :func:`layer_norm`."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 device=None, dtype=None, backend="auto"):
        check_backend_name("LayerNorm", backend)
        super().__init__(normalized_shape, eps, elementwise_affine, bias, device, dtype)
        self.backend = backend

    def forward(self, x):
        rows = _rows(x, self.normalized_shape, "LayerNorm")
        y = layer_norm(rows, _flat(self.weight), _flat(self.bias), self.eps, backend=self.backend)
        return y.view(x.shape)


class RMSNorm(norms.RMSNorm):
    """Drop-in for ``torch.nn.RMSNorm``: ``eps=None`` means ``torch.finfo(x.dtype).eps``."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True,
                 device=None, dtype=None, backend="auto"):
        check_backend_name("RMSNorm", backend)
        super().__init__(normalized_shape, eps, elementwise_affine, device, dtype)
        self.backend = backend

    def forward(self, x):
        rows = _rows(x, self.normalized_shape, "RMSNorm")
        # eps=None is torch's finfo(x.dtype).eps; rms_norm resolves it
        return rms_norm(rows, _flat(self.weight), self.eps, backend=self.backend).view(x.shape)
