"""``nn.Module`` drop-ins for ``nn.LayerNorm`` and ``nn.RMSNorm`` backed by the kernels.

Same constructor arguments, same parameters and ``state_dict`` keys
(``weight``, ``bias``), so a checkpoint trained with torch's modules loads
into these and back.  A multi-dimensional ``normalized_shape`` is handled by
flattening the normalized dimensions into one row of ``N`` features.
"""

from __future__ import annotations


import torch
from torch import nn

from normcourse.kernels.functional import layer_norm, rms_norm

__all__ = ["LayerNorm", "RMSNorm"]


def _as_shape(normalized_shape) -> tuple[int, ...]:
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    return tuple(int(n) for n in normalized_shape)


def _rows(x: torch.Tensor, shape: tuple[int, ...], op: str) -> torch.Tensor:
    """Flatten the trailing ``shape`` dims of x into one feature dimension."""
    if not isinstance(x, torch.Tensor) or x.dim() < len(shape) or \
            tuple(x.shape[x.dim() - len(shape):]) != shape:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{op}: x of shape {got} does not end with normalized_shape {shape}")
    return x if len(shape) == 1 else x.flatten(x.dim() - len(shape))


def _flat(p):
    return p.reshape(-1) if p is not None else None


class LayerNorm(nn.Module):
    """Drop-in for ``torch.nn.LayerNorm``; ``backend`` as in :func:`layer_norm`."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 device=None, dtype=None, backend="auto"):
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        if not (eps > 0):
            raise ValueError(f"LayerNorm: eps must be > 0, got {eps!r}")
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.backend = backend
        factory = {"device": device, "dtype": dtype}
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape, **factory))
            if bias:
                self.bias = nn.Parameter(torch.zeros(self.normalized_shape, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        rows = _rows(x, self.normalized_shape, "LayerNorm")
        y = layer_norm(rows, _flat(self.weight), _flat(self.bias), self.eps, backend=self.backend)
        return y.view(x.shape)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class RMSNorm(nn.Module):
    """Drop-in for ``torch.nn.RMSNorm``: ``eps=None`` means ``torch.finfo(x.dtype).eps``."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True,
                 device=None, dtype=None, backend="auto"):
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        if eps is not None and not (eps > 0):
            raise ValueError(f"RMSNorm: eps must be > 0 or None, got {eps!r}")
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.backend = backend
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape, device=device,
                                                  dtype=dtype))
        else:
            self.register_parameter("weight", None)

    def forward(self, x):
        rows = _rows(x, self.normalized_shape, "RMSNorm")
        eps = self.eps
        if eps is None:  # torch's convention; an int x is left for rms_norm to reject
            eps = torch.finfo(x.dtype).eps if x.is_floating_point() else 1e-6
        return rms_norm(rows, _flat(self.weight), eps, backend=self.backend).view(x.shape)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")
