"""Per-layer diagnostics for any ``nn.Module``: what a practitioner looks at.

Attach as a context manager; forward hooks go on the chosen submodules (by
default the entries of the first ``nn.ModuleList`` found, i.e. a transformer's
blocks) and come off on exit::

    with Diagnostics(model, optimizer=opt) as diag:
        for step in range(n):
            loss = model(x, y)[1]
            loss.backward()
            opt.step()            # the optimizer hooks record grads and updates
            opt.zero_grad()
    rows = diag.records           # a list of dicts, one per (step, kind, name)

Recorded, per step:

- ``activation`` rows (per hooked module): mean, RMS and max |value| of its
  output, and max/median of |value| (a large ratio flags the "massive
  activations" of Sun et al. 2024), and ``frac_large``, the fraction of
  entries above 3 RMS (a model-agnostic stand-in for "% saturated").
- ``cosine`` rows: cosine similarity between a module's input and output (the
  residual stream before and after a layer), averaged over positions.
- ``grad`` rows (per parameter): gradient norm and grad:data ratio.
- ``update`` rows (per parameter): update:data ratio std(delta p) / std(p)
  (p before the step),
  the quantity of Karpathy's makemore part 3 (healthy around 1e-3).

Without an optimizer, call :meth:`Diagnostics.record_grads` after backward
and :meth:`Diagnostics.next_step` between steps yourself.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn

from normcourse.checks import check_int

# The fields of each kind of record (besides step, kind and name).
FIELDS = {
    "activation": ("mean", "rms", "max", "max_median_ratio", "frac_large"),
    "cosine": ("cosine",),
    "grad": ("shape", "grad_norm", "grad_data_ratio"),
    "update": ("ndim", "update_data_ratio"),
}


def _first_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    return None


def select_modules(model: nn.Module, modules=None) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs to hook.

    ``modules`` may be None (the children of the first ``nn.ModuleList``,
    e.g. ``model.blocks``, else the model's children; a model with none, such
    as a single ``nn.Linear``, is itself recorded under its class name), a
    module type or tuple of types, a regular expression matched against
    qualified names, or an explicit list of names.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = list(model.named_modules())
    if modules is None:
        for name, m in named:
            if isinstance(m, nn.ModuleList):
                return [(f"{name}.{i}", c) for i, c in enumerate(m)]
        # a leaf module has no submodule to hook: the only output to record is its own
        return [(n, m) for n, m in model.named_children()] or [(type(model).__name__, model)]
    if isinstance(modules, type) or (isinstance(modules, tuple) and all(isinstance(t, type) for t in modules)):
        return [(n, m) for n, m in named if isinstance(m, modules) and n]
    if isinstance(modules, str):
        try:
            pattern = re.compile(modules)
        except re.error as err:
            raise ValueError(f"modules={modules!r} is not a valid regular expression: {err}") from None
        return [(n, m) for n, m in named if n and pattern.fullmatch(n)]
    try:
        wanted = list(modules)
    except TypeError:
        wanted = None
    if wanted is None or not all(isinstance(n, str) for n in wanted):
        raise TypeError(f"modules must be None, a module type or tuple of types, a regular expression "
                        f"(str) or a list of submodule names, got {type(modules).__name__} {modules!r}")
    lookup = dict(named)
    missing = [n for n in wanted if n not in lookup]
    if missing:
        raise ValueError(f"no submodule named {missing}; some valid names: {[n for n, _ in named[1:8]]}")
    return [(n, lookup[n]) for n in wanted]


class Diagnostics:
    """Context manager recording per-layer statistics of ``model`` (see module doc).

    ``parameters``: ``"matrices"`` (default) records grads and updates of
    weight matrices only, ``"all"`` of every parameter.  ``every=n`` records
    every n-th step.  ``keep_values`` keeps the last forward's outputs and the
    last gradients (copies on the CPU, at most ``max_values`` entries each)
    for histograms.
    """

    def __init__(self, model: nn.Module, modules=None, optimizer: torch.optim.Optimizer | None = None,
                 keep_values: bool = True, max_values: int = 20_000, every: int = 1,
                 parameters: str = "matrices"):
        self.model = model
        self.targets = select_modules(model, modules)
        if not self.targets:
            some = [n for n, _ in model.named_modules() if n][:8]
            raise ValueError(f"no submodules matched modules={modules!r}; some valid names: {some}")
        check_int("every", every, low=1)
        check_int("max_values", max_values, low=0)
        self.optimizer = optimizer
        self.keep_values = keep_values
        self.max_values = max_values
        self.every = every                      # record every n-th step (hooks stay cheap)
        if parameters not in ("matrices", "all"):
            raise ValueError(f"parameters must be 'matrices' or 'all', got {parameters!r}")
        # makemore's plots show weight matrices; biases and norm gains are opt-in
        self.min_ndim = 2 if parameters == "matrices" else 0
        self.step = 0
        self.records: list[dict] = []
        self.activations: dict[str, torch.Tensor] = {}   # last recorded outputs
        self.gradients: dict[str, torch.Tensor] = {}     # last recorded parameter grads
        self._handles = []
        self._active = False                    # inside `with`: hooks are on
        self._before: dict[str, torch.Tensor] = {}
        self._data_std: dict[str, torch.Tensor] = {}

    # -- lifecycle
    def __enter__(self):
        if self._active:
            # a second set of hooks would record every forward twice, and the inner
            # exit would take all of them off while the outer `with` still runs
            raise RuntimeError("this Diagnostics is already attached (nested `with` on the same "
                               "instance); use one `with`, or a second Diagnostics object")
        self._active = True
        for name, module in self.targets:
            self._handles.append(module.register_forward_hook(self._forward_hook(name)))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._pre_step))
            self._handles.append(self.optimizer.register_step_post_hook(self._post_step))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._active = False
        return False

    def next_step(self):
        """Advance the step counter (done for you when an optimizer is attached)."""
        self.step += 1

    @property
    def recording(self) -> bool:
        return self.step % self.every == 0

    # -- activations
    def _forward_hook(self, name):
        def hook(module, inputs, output):
            if not self.recording:
                return
            out = _first_tensor(output)
            if out is None or out.numel() == 0:
                return   # an empty batch has no statistics (and aminmax of nothing raises)
            with torch.no_grad():
                o = out.detach().float()
                flat = o.flatten()
                rms = flat.pow(2).mean().sqrt()
                low, high = torch.aminmax(flat)
                peak = torch.maximum(high, -low)
                # the median |value| of a strided sample of <= 8192 entries: exact enough
                # for a ratio that matters when it is 100x, and it keeps the hook cheap
                median = flat[:: max(1, flat.numel() // 8192)].abs().median()
                stats = [flat.mean(), rms, peak, peak / median.clamp_min(1e-12),
                         (flat.abs() > 3 * rms).float().mean()]
                x = _first_tensor(inputs)
                has_cos = x is not None and x.shape == o.shape and o.dim() >= 2
                if has_cos:  # the residual stream before and after this module
                    stats.append(torch.nn.functional.cosine_similarity(
                        x.detach().float().reshape(-1, o.shape[-1]), o.reshape(-1, o.shape[-1]), dim=-1).mean())
                values = torch.stack(stats).tolist()  # one sync for all of them
                self.records.append(dict(step=self.step, kind="activation", name=name, mean=values[0],
                                         rms=values[1], max=values[2], max_median_ratio=values[3],
                                         frac_large=values[4]))
                if has_cos:
                    self.records.append(dict(step=self.step, kind="cosine", name=name, cosine=values[5]))
                if self.keep_values:
                    self.activations[name] = o.flatten()[: self.max_values].to("cpu", copy=True)
        return hook

    # -- gradients and updates
    @torch.no_grad()
    def record_grads(self):
        """Record each parameter's gradient norm and grad:data ratio (call after backward)."""
        if not self.recording:
            return
        named = [(n, p) for n, p in self.model.named_parameters()
                 if p.grad is not None and p.dim() >= self.min_ndim]
        if not named:
            return
        grads = [p.grad.detach().float() for _, p in named]
        norms = torch.stack(torch._foreach_norm(grads)).tolist()   # one fused call for all norms
        # grad:data ratio std(grad) / std(weight), only meaningful for tensors with > 1 entry
        data_std = [p.detach().float().std() if p.numel() > 1 else g.new_tensor(float("nan"))
                    for g, (_, p) in zip(grads, named)]
        self._data_std = dict(zip((n for n, _ in named), data_std))
        ratios = torch.stack([g.std() / d.clamp_min(1e-12) if g.numel() > 1 else d
                              for g, d in zip(grads, data_std)]).tolist()
        for (name, p), g, norm, ratio in zip(named, grads, norms, ratios):
            self.records.append(dict(step=self.step, kind="grad", name=name, shape=tuple(p.shape),
                                     grad_norm=norm, grad_data_ratio=ratio))
            if self.keep_values:
                self.gradients[name] = g.flatten()[: self.max_values].to("cpu", copy=True)

    def _pre_step(self, optimizer, args, kwargs):
        if not self.recording:
            return
        self.record_grads()
        self._before = {n: p.detach().clone() for n, p in self.model.named_parameters()
                        if p.numel() > 1 and p.dim() >= self.min_ndim}

    def _post_step(self, optimizer, args, kwargs):
        if self.recording:
            self.record_updates()
        self.next_step()

    @torch.no_grad()
    def record_updates(self):
        """update:data ratio std(p_after - p_before) / std(p_before) for each recorded parameter."""
        named = [(n, p) for n, p in self.model.named_parameters() if n in self._before]
        if named:
            ratios = torch.stack([(p.detach() - self._before[n]).float().std()
                                  / self._data_std[n].clamp_min(1e-12) for n, p in named]).tolist()
            for (name, p), ratio in zip(named, ratios):
                self.records.append(dict(step=self.step, kind="update", name=name, ndim=p.dim(),
                                         update_data_ratio=ratio))
        self._before = {}

    # -- tidy access
    def rows(self, kind: str | None = None, name: str | None = None) -> list[dict]:
        """Records filtered by kind and/or name."""
        if kind is not None and kind not in FIELDS:
            raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(FIELDS)}")
        return [r for r in self.records if (kind is None or r["kind"] == kind)
                and (name is None or r["name"] == name)]

    def table(self, kind: str, field: str) -> tuple[list[int], list[str], list[list[float]]]:
        """(steps, names, values[step][name]) for one field: ready for a heatmap."""
        rows = self.rows(kind)
        if field not in FIELDS[kind]:
            raise ValueError(f"{kind} records have no field {field!r}; choose one of {', '.join(FIELDS[kind])}")
        names = list(dict.fromkeys(r["name"] for r in rows))
        steps = sorted({r["step"] for r in rows})
        index = {(r["step"], r["name"]): r[field] for r in rows}
        return steps, names, [[index.get((s, n), float("nan")) for n in names] for s in steps]
