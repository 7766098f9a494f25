"""Interactive explorers for the chapters (ipywidgets), each with a static twin.

A widget only runs in a live notebook.  Every explorer therefore comes as a
plain plotting function (``draw_*``), which the rendered book shows as a
figure, and a ``*_explorer()`` that wires sliders to the same function.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch

from normcourse import plots

__all__ = ["layer_norm_computed_in", "draw_eps_dtype", "eps_dtype_explorer", "draw_eps_sweep",
           "draw_gradient_profiles", "gradient_profile_explorer"]

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def layer_norm_computed_in(x: torch.Tensor, eps: float, dtype: torch.dtype) -> torch.Tensor:
    """LayerNorm (no affine) with *every* step in ``dtype``, as a careless kernel would.

    ``eps`` is rounded to ``dtype`` too.  Returned in float32 for plotting.
    """
    x = x.to(dtype)
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return ((x - mean) / torch.sqrt(var + torch.tensor(eps, dtype=dtype))).float()


def _row(row_std: float, n: int = 4096, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, n, generator=g, dtype=torch.float64) * row_std + 1.0).float()


def draw_eps_dtype(log10_eps: float = -5.0, log10_row_std: float = -2.0, dtype: str = "float16",
                   ax=None):
    """Histogram of LayerNorm's output for one row, statistics computed in ``dtype``.

    The row has mean 1 and standard deviation ``10**log10_row_std``.  A correct
    LayerNorm returns values with standard deviation ~1; the title reports what
    this one returned.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    eps, std = 10.0 ** log10_eps, 10.0 ** log10_row_std
    row = _row(std)
    out = layer_norm_computed_in(row, eps, DTYPES[dtype])[0]
    exact = layer_norm_computed_in(row.double(), eps, torch.float64)[0].float()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.4))
    finite = out[torch.isfinite(out)]
    ax.hist(exact.numpy(), bins=60, histtype="step", color="gray", label="float64 statistics")
    if finite.numel():
        ax.hist(finite.numpy(), bins=60, histtype="step", lw=1.5, label=f"{dtype} statistics")
    n_bad = int((~torch.isfinite(out)).sum())
    out_std = float(finite.std()) if finite.numel() > 1 else float("nan")
    ax.set_title(f"row std 1e{log10_row_std:+.1f}, eps 1e{log10_eps:+.1f}, {dtype}: "
                 f"output std {out_std:.3g}" + (f", {n_bad} NaN/inf" if n_bad else ""), fontsize=9)
    ax.set_xlabel("normalized value")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    return ax


def eps_dtype_explorer():
    """Sliders for eps, the row's spread and the dtype of the statistics."""
    import ipywidgets as widgets

    def show(log10_eps, log10_row_std, dtype):
        draw_eps_dtype(log10_eps, log10_row_std, dtype)
        plt.show()

    return widgets.interactive(
        show,
        log10_eps=widgets.FloatSlider(value=-5, min=-12, max=-1, step=0.5, description="log10 eps"),
        log10_row_std=widgets.FloatSlider(value=-2, min=-5, max=0, step=0.25,
                                          description="log10 std"),
        dtype=widgets.Dropdown(options=list(DTYPES), value="float16", description="dtype"),
    )


def draw_eps_sweep(eps_values=(1e-12, 1e-5), ax=None):
    """Output std of LayerNorm against the row's spread, per dtype and eps (the static twin)."""
    stds = [10.0 ** (k / 4) for k in range(-24, 1)]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.8, 3.8))
    for eps, style in zip(eps_values, ("-", "--")):
        for name, dtype in DTYPES.items():
            ys = []
            for s in stds:
                out = layer_norm_computed_in(_row(s), eps, dtype)
                ys.append(float(out.std()) if torch.isfinite(out).all() else math.nan)
            ax.semilogx(stds, ys, style, label=f"{name}, eps={eps:g}")
    ax.axhline(1.0, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("standard deviation of the input row (mean 1)")
    ax.set_ylabel("std of LayerNorm output")
    ax.set_title("LayerNorm with every step in one dtype (gaps: NaN)")
    ax.legend(fontsize=7, ncol=2)
    return ax


def draw_gradient_profiles(profile, placements, n_layer=12, embed_scale=50.0,
                           titles=None, ax=None):
    """Per-layer gradient norm at initialization, one line per placement.

    ``profile(placement, n_layer, embed_scale)`` returns the per-layer values
    (chapter 8's ``grad_profile`` over the cached E2 runs); ``titles`` maps a
    placement to its legend label.
    """
    titles = titles or {}
    series = {titles.get(p, p): profile(p, n_layer, embed_scale) for p in placements}
    return plots.depth_lines(series, ax=ax, logy=True, ylabel="gradient norm at init",
                             title=f"E2: {n_layer} layers, embed_scale {embed_scale:g}")


def gradient_profile_explorer(profile, placements, titles=None, depths=(3, 6, 12, 24),
                              embed_scales=(1.0, 50.0)):
    """Pick placements, a depth and an embedding scale; see their gradient profiles."""
    import ipywidgets as widgets

    titles = titles or {}

    def show(placements, n_layer, embed_scale):
        draw_gradient_profiles(profile, placements, n_layer, embed_scale, titles)
        plt.show()

    return widgets.interactive(
        show,
        placements=widgets.SelectMultiple(options=[(titles.get(p, p), p) for p in placements],
                                          value=tuple(placements[:2]), description="placement"),
        n_layer=widgets.Dropdown(options=list(depths), value=depths[-2], description="depth"),
        embed_scale=widgets.Dropdown(options=list(embed_scales), value=embed_scales[-1],
                                     description="embed_scale"),
    )
