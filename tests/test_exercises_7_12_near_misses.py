"""The checkers of chapters 7-12 draw inputs that separate every known mistake.

The near misses themselves are data in ``tests/near_misses/ch07.py`` ... ``ch12.py``
(run by ``tests/test_near_misses.py``).  Here: each checker's list of known wrong
formulas differs from the reference on its inputs by far more than the tolerance,
and, where a mistake is named from a few numbers (counts of bytes, of spikes, of
flagged layers), no two mistakes give the same numbers, so naming one never
misleads.  And the helper that catches an edited list or dict.
"""

import math
import re

import pytest
import torch

from normcourse.exercises import containers, depth, diagnostics_practice as dp, fused_add, no_norm
from normcourse.exercises import placements as pl
from normcourse.train import count_spikes


def _distinct(signatures, reference):
    """Every signature differs from the reference and from every other one."""
    assert all(sig != reference for sig in signatures)
    assert len(set(signatures)) == len(signatures)


# ------------------------------------------------------------------ counts: nameable mistakes

def test_every_byte_count_mistake_has_its_own_counts():
    cases = [(m, n, e, f) for m, n, e in fused_add._CASES for f in (True, False)]
    sigs = [tuple(rule(*c) for c in cases) for rule, _, _ in fused_add._ADD_NORM_MISTAKES]
    _distinct(sigs, tuple(fused_add.add_norm_bytes(*c) for c in cases))


def test_every_spike_mistake_has_its_own_counts():
    cases = [(losses, r, w) for _, losses, combos in pl._spike_cases() for r, w in combos]
    sigs = [tuple(rule(list(l), r, w) for l, r, w in cases) for rule, _, _ in pl._SPIKE_MISTAKES]
    _distinct(sigs, tuple(count_spikes(l, r, w) for l, r, w in cases))


def test_the_spike_curves_have_both_window_parities_and_ties():
    settings = {w % 2 for _, _, combos in pl._spike_cases() for _, w in combos}
    assert settings == {0, 1}
    assert any(r != 1.2 for _, _, combos in pl._spike_cases() for r, _ in combos)


def test_every_massive_activation_mistake_flags_its_own_layers():
    inputs = [(dp._activations(seed, t), t) for seed, t in ((0, 300.0), (1, 1000.0), (2, 20.0))]
    sigs = [tuple(tuple(dp._variant(a, t, ratio, *(() if above is None else (above,))))
                  for a, t in inputs) for _, ratio, above in dp._MASSIVE_MISTAKES]
    _distinct(sigs, tuple(tuple(dp.flag_massive(a, t)) for a, t in inputs))


def test_flag_massive_inputs_sort_out_of_order_and_sit_on_the_threshold():
    for seed, t in ((0, 300.0), (1, 1000.0), (2, 20.0)):
        acts = dp._activations(seed, t)
        flagged = dp.flag_massive(acts, t)
        assert sorted(flagged) != flagged, "sorted() would go unseen"
        probe = acts["probe"].abs().flatten()
        assert probe.max() / probe.median() == t and "probe" not in flagged
        assert all(a.numel() % 2 == 1 for a in acts.values())   # one middle value


# ------------------------------------------------------------------ tensors: far from the reference

def test_the_cosine_streams_turn_backwards():
    for n_layer, shape, seed in ((4, (3, 5, 8), 0), (6, (2, 7, 16), 1)):
        hs = depth._streams(n_layer, shape, seed)
        cos = [torch.nn.functional.cosine_similarity(a, b, dim=-1) for a, b in zip(hs, hs[1:])]
        per_layer = torch.stack([c.mean() for c in cos])
        assert (per_layer < -0.3).any(), "abs() of a mean cosine would go unseen"
        mixed = [c for c in cos if (c < -0.1).any() and (c > 0.1).any()]
        assert mixed, "abs() of each cosine would go unseen"
        assert min((c.abs().mean() - c.mean()).abs().max() for c in mixed) > 1e-2


@pytest.mark.parametrize("d, seed, shape", [(8, 1, (3, 8)), (16, 2, (2, 5, 16))])
def test_every_pre_ln_mistake_is_far_from_the_block(d, seed, shape):
    attn, mlp, na, nm = pl._sublayers(d, seed)
    x = 2.0 + 3.0 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 10),
                                dtype=torch.float64)
    with torch.no_grad():
        ref = pl.pre_ln_block(x, attn, mlp, na, nm)
    with torch.no_grad():
        values = [w.value() for w in pl._pre_ln_mistakes(x, attn, mlp, na, nm)]
    for i, v in enumerate(values):
        assert (v - ref).abs().max() > 1e-3
        assert all((v - w).abs().max() > 1e-3 for w in values[i + 1:])


@pytest.mark.parametrize("d, seed, alpha", [(8, 3, 12 ** 0.25), (16, 4, 48 ** 0.25)])
def test_every_deepnorm_mistake_is_far_from_the_residual(d, seed, alpha):
    sub, _, norm, _ = pl._sublayers(d, seed)
    x = 0.5 + torch.randn(4, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        ref = pl.deepnorm_residual(x, sub, norm, alpha)
    with torch.no_grad():
        values = [w.value() for w in pl._deepnorm_mistakes(x, sub, norm, alpha)]
    for i, v in enumerate(values):
        assert (v - ref).abs().max() > 1e-3
        assert all((v - w).abs().max() > 1e-3 for w in values[i + 1:])


def _adaln_inputs():
    """The checker's inputs, drawn as the checker draws them."""
    g = torch.Generator().manual_seed(1111)
    w = torch.randn(16, 16, generator=g, dtype=torch.float64) / 4

    def branch(h):
        return torch.tanh(h @ w.to(h.dtype)) + 0.1

    cases = []
    for B, T, s in ((3, 5, 0.5), (4, 4, 1.0), (2, 7, 0.3)):
        x = torch.randn(B, T, 16, generator=g) * 2 + 0.5
        cases.append((x, *(torch.randn(B, 16, generator=g) * s for _ in range(3))))
    spread = torch.tensor([3e-3, 1.0, 1e-2, 5e-3, 2.0])[None, :, None]
    x = 0.5 + torch.randn(3, 5, 16, generator=g) * spread
    cases.append((x, *(torch.randn(3, 16, generator=g) * 0.5 for _ in range(3))))
    return cases, branch


def test_every_adaln_mistake_shows_on_some_input():
    cases, branch = _adaln_inputs()
    n = len(no_norm._adaln_variants(*cases[0], branch))
    for i in range(n):
        gaps = []
        for x, sh, sc, g in cases:
            ref = no_norm._adaln_zero(x, sh, sc, g, branch)
            try:
                wrong = no_norm._adaln_variants(x, sh, sc, g, branch)[i].value()
            except RuntimeError:                  # a wrong broadcast fails on this shape
                continue
            gaps.append(float((wrong - ref).abs().max()) if wrong.shape == ref.shape else math.inf)
        assert max(gaps) > 1e-2, no_norm._adaln_variants(*cases[0], branch)[i].what


def test_the_eps_mistakes_show_only_on_the_small_spread_tokens():
    # so that every other mistake is named on the earlier inputs, where eps does not matter
    cases, branch = _adaln_inputs()
    for k, (x, sh, sc, g) in enumerate(cases):
        ref = no_norm._adaln_zero(x, sh, sc, g, branch)
        default_eps = [v for v in no_norm._adaln_variants(x, sh, sc, g, branch)
                       if "1e-5" in v.what][0].value()
        gap = float((default_eps - ref).abs().max())
        assert (gap > 1e-2) if k == len(cases) - 1 else (gap < 1e-4)   # the tolerance


def test_every_backward_mistake_shows_on_some_shape():
    g = torch.Generator().manual_seed(5)
    shapes = ((4, 16), (2, 3, 40), (5, 1))
    inputs = []
    for shape in shapes:
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        r = torch.randn(*shape, generator=g, dtype=torch.float64) * 2
        if shape == (4, 16):
            x[1], r[1] = x[1] * 1e-3, r[1] * 1e-3
        w = torch.randn(shape[-1], generator=g, dtype=torch.float64) * 0.5 + 1
        inputs.append((x, r, w, 1e-6, torch.randn(*shape, generator=g, dtype=torch.float64),
                       torch.randn(*shape, generator=g, dtype=torch.float64)))
    n = len(fused_add._backward_wrongs(*inputs[0]))
    for i in range(n):
        gaps = []
        for args in inputs:
            ref = fused_add._reference_backward(*args)
            mistake = fused_add._backward_wrongs(*args)[i]
            what, wrong = mistake.what, mistake.value()
            gaps += [float((a - b).abs().max()) for a, b in zip(wrong, ref) if a is not None]
        assert max(gaps) > 1e-3, what


# ------------------------------------------------------------------ edited lists and dicts

@pytest.mark.parametrize("edit, words", [
    (lambda v: v["blocks"].pop(1), "now has 2 items instead of 3"),
    (lambda v: v["blocks"].__setitem__(0, "other"), "blocks'][0] was replaced"),
    (lambda v: v.pop("loss"), "key 'loss' was removed"),
    (lambda v: v.__setitem__("outcome", "trained"), "key 'outcome' was added"),
    (lambda v: v["loss"].__setitem__(2, 9.0), "['loss'][2] was replaced"),
])
def test_first_change_says_what_was_edited(edit, words):
    value = {"blocks": [object(), object(), object()], "loss": [3.0, 2.5, 2.0]}
    record = containers._record(value)
    assert containers.first_change(record, value, "run") is None
    edit(value)
    assert words in containers.first_change(record, value, "run")


def test_first_change_ignores_a_number_written_back_unchanged():
    losses = [3.0, float("nan"), 2.0]
    record = containers._record(losses)
    losses[0], losses[1] = float(losses[0]), float("nan")
    assert containers.first_change(record, losses, "losses") is None


# ------------------------------------------------------------------ every Wrong, on the checker's own inputs

from normcourse.exercises import attention_norms, residual_streams   # noqa: E402
from normcourse.exercises.feedback import close as _close   # noqa: E402


def _recorded(monkeypatch, module, name, calls):
    """Replace ``module.name`` (the checker module's compare) by a recorder of its arguments."""
    original = getattr(module, name)

    def record(out, ref, tol, wrongs, *args, rtol=0.0, **kwargs):
        calls.append((ref, tol, rtol, list(wrongs)))
        return original(out, ref, tol, wrongs, *args, rtol=rtol, **kwargs)
    monkeypatch.setattr(module, name, record)


def _kind(what):
    """A mistake's message without the numbers and labels of one input."""
    return re.sub(r"\d+", "#", re.sub(r" \([^()]*\)$", "", what))


@pytest.mark.parametrize("check, reference, patch", [
    (attention_norms.check_qk_norm_logits, attention_norms.qk_norm_logits,
     [(attention_norms, "compare")]),
    (attention_norms.check_z_loss, attention_norms.z_loss, [(attention_norms, "compare")]),
    (attention_norms.check_reordered_block, attention_norms.reordered_block,
     [(pl, "compare")]),
    (residual_streams.check_sinkhorn, residual_streams.sinkhorn, [(residual_streams, "compare")]),
    (residual_streams.check_ngpt_update, residual_streams.ngpt_update,
     [(residual_streams, "compare")]),
    (residual_streams.check_composite_gain, residual_streams.composite_gain,
     [(residual_streams, "compare")]),
    (no_norm.check_adaln_zero, lambda x, *a: no_norm._adaln_zero(x, *a).to(x.dtype),
     [(no_norm, "compare")]),
    (pl.check_pre_ln_block, pl.pre_ln_block, [(pl, "compare")]),
    (pl.check_deepnorm_residual, pl.deepnorm_residual, [(pl, "compare")]),
    (depth.check_adjacent_cosine, None, [(depth, "compare")]),
    (depth.check_forward_skipping, depth.forward_skipping, [(depth, "compare")]),
])
def test_every_known_mistake_is_far_from_the_reference_on_some_input(check, reference, patch,
                                                                      monkeypatch, capsys):
    """Issue 16, item 2: each Wrong a checker lists differs from the reference by far more
    than the tolerance on at least one of the checker's own inputs (else it is never named)."""
    import normcourse.ablations as ablations
    calls = []
    for module, name in patch:
        _recorded(monkeypatch, module, name, calls)
    if reference is None:
        reference = ablations.adjacent_cosine
    assert check(reference), capsys.readouterr().out
    assert calls, "the checker never compared"
    gaps = {}
    with torch.no_grad():
        for ref, tol, rtol, wrongs in calls:
            for wrong in wrongs:
                try:
                    value = torch.as_tensor(wrong.value(), dtype=torch.float64)
                except Exception:        # a mistake that does not apply to this input
                    continue
                far = value.shape == ref.shape and not _close(value, ref, 10 * tol, 10 * rtol)
                gaps[_kind(wrong.what)] = gaps.get(_kind(wrong.what), False) or far
    assert gaps and all(gaps.values()), [k for k, v in gaps.items() if not v]


def test_every_update_ratio_mistake_is_far_from_the_reference():
    for seed in (0, 1):
        before, after = dp._parameters(seed)
        ref = {k: v for k, v in dp.update_data_ratios(before, after).items() if math.isfinite(v)}
        for wrong in dp._ratio_mistakes(before, after, ref):
            values = wrong.value()
            assert any(not math.isclose(values[k], ref[k], rel_tol=0.1) for k in ref if ref[k] > 0), \
                wrong.what
