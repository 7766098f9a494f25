"""The helpers every checker shares: numbers in any form, in-place edits inside containers,
mistakes named only where they make a difference, and float32 allowances."""

import numpy as np
import pytest
import torch

from normcourse.exercises import feedback as fb
from normcourse.exercises.feedback import (
    Mistake, as_number, call_learner, float32_error, is_mistake,
)


@pytest.mark.parametrize("value", [
    3, 3.0, np.int64(3), np.int32(3), np.float32(3.0), np.float64(3.0), np.array(3),
    np.array([3.0]), torch.tensor(3), torch.tensor([3.0]), torch.tensor(3.0, dtype=torch.float64),
])
def test_as_number_accepts_every_form_of_a_number(value):
    assert as_number(value) == 3.0
    assert as_number(value, whole=True) == 3
    assert type(as_number(value, whole=True)) is int


@pytest.mark.parametrize("value, message", [
    (None, "got NoneType"),
    ("3", "got str '3'"),
    (True, "got bool"),
    (np.bool_(True), "got bool"),
    (torch.ones(2), "tensor of shape (2,)"),
    (np.ones((2, 2)), "NumPy array of shape (2, 2)"),
    ([3], "got list"),
])
def test_as_number_rejects_what_is_not_one_number(value, message):
    with pytest.raises(Mistake) as err:
        as_number(value)
    assert message in err.value.what


@pytest.mark.parametrize("value", [2.5, float("nan"), float("inf"), np.float64("nan")])
def test_as_number_whole_rejects_fractions_nan_and_inf(value):
    with pytest.raises(Mistake) as err:
        as_number(value, "the count", whole=True)
    assert "should be a whole number" in err.value.what


def test_call_learner_sees_in_place_edits_inside_lists_and_dicts():
    hs = [torch.ones(3), torch.ones(3)]
    with pytest.raises(Mistake) as err:
        call_learner(lambda h: h[1].mul_(2), hs, name="f")
    assert "argument number 1 (the tensor at [1]) in place" in err.value.what
    params = {"w": torch.ones(2)}
    with pytest.raises(Mistake) as err:
        call_learner(lambda a, d: d["w"].zero_(), 0, params, name="f")
    assert "argument number 2 (the tensor at ['w']) in place" in err.value.what


def test_call_learner_lets_rebinding_and_nan_inputs_pass():
    hs = [torch.ones(3)]

    def rebinds(h):
        h[0] = h[0] - 1          # the caller's tensor is untouched
        return 0

    assert call_learner(rebinds, hs) == 0
    x = torch.tensor([1.0, float("nan")])
    assert call_learner(lambda t: 1, x) == 1


def test_call_learner_explain_gives_a_specific_hint():
    def explain(err):
        return "a specific hint" if isinstance(err, KeyError) else None

    with pytest.raises(Mistake) as err:
        call_learner(lambda d: d["missing"], {}, explain=explain)
    assert err.value.hint == "a specific hint"
    with pytest.raises(Mistake) as err:
        call_learner(lambda: 1 / 0, explain=explain)
    assert "print the shapes" in err.value.hint


def test_is_mistake_only_when_the_mistake_changes_the_answer():
    x = torch.tensor([[2.0], [3.0]])                   # one element per row: sum == mean
    ref = x / (x * x).mean(-1, keepdim=True).sqrt()
    summed = x / (x * x).sum(-1, keepdim=True).sqrt()
    assert not is_mistake(ref, summed, ref, atol=1e-6)
    x = torch.tensor([[2.0, 1.0]])
    ref = x / (x * x).mean(-1, keepdim=True).sqrt()
    summed = x / (x * x).sum(-1, keepdim=True).sqrt()
    assert is_mistake(summed, summed, ref, atol=1e-6)
    assert not is_mistake(ref, summed, ref, atol=1e-6)


def test_float32_error_measures_the_float32_version_of_a_formula():
    x = torch.randn(100, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    err = float32_error(lambda v: v.exp().sum(), x)
    assert 0 < err < 1e-4
    errs = float32_error(lambda v: (v * 3, v.sin()), x)
    assert len(errs) == 2 and all(0 <= e < 1e-6 for e in errs)


def test_yours_or_reference_keeps_a_function_that_passed(capsys):
    def mine(x):
        return x + 1

    def ref(x):
        return x + 1

    assert fb.yours_or_reference(True, mine, ref) is mine
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("passed", [False, None])
def test_yours_or_reference_falls_back_with_a_note(passed, capsys):
    def my_stub(x):
        raise NotImplementedError("your code here")

    def ref(x):
        return x + 1

    assert fb.yours_or_reference(passed, my_stub, ref) is ref
    out = capsys.readouterr().out
    assert "my_stub has not passed its checker yet" in out and "ref" in out


@pytest.mark.parametrize("check, reference", [
    ("check_pre_ln_block", "pre_ln_block"),
    ("check_deepnorm_residual", "deepnorm_residual"),
    ("check_classify_run", "classify_run"),
])
def test_the_fallback_references_pass_their_checkers(check, reference, capsys):
    from normcourse.exercises import placements
    assert getattr(placements, check)(getattr(placements, reference)), capsys.readouterr().out


def test_the_fallback_references_of_chapters_10_and_12_pass_their_checkers(capsys):
    from normcourse import ablations
    from normcourse.exercises import depth, diagnostics_practice as dp
    from normcourse.train import count_spikes
    from normcourse.exercises.placements import check_count_spikes
    assert depth.check_forward_skipping(depth.forward_skipping), capsys.readouterr().out
    assert depth.check_adjacent_cosine(ablations.adjacent_cosine), capsys.readouterr().out
    assert check_count_spikes(count_spikes), capsys.readouterr().out
    assert dp.check_update_data_ratios(dp.update_data_ratios), capsys.readouterr().out
    assert dp.check_flag_massive(dp.flag_massive), capsys.readouterr().out


# ---- library calls an exercise rules out ---------------------------------------------------

_NO_LAYER_NORM = (fb.Forbidden((torch.nn.functional.layer_norm, torch.layer_norm),
                               "you called layer_norm", "write it yourself"),)


def _aliased(x):
    from torch.nn.functional import layer_norm as ln   # imported under another name
    return ln(x, x.shape[-1:])


@pytest.mark.parametrize("fn", [
    lambda x: torch.nn.functional.layer_norm(x, x.shape[-1:]),
    _aliased,
    lambda x: torch.nn.LayerNorm(x.shape[-1])(x),          # a module that calls it
    lambda x: torch.layer_norm(x, x.shape[-1:]),             # the built-in underneath
])
def test_a_forbidden_call_is_a_mistake_however_it_is_reached(fn):
    with pytest.raises(Mistake, match="you called layer_norm"):
        call_learner(fn, torch.randn(3, 4), forbidden=_NO_LAYER_NORM)


def test_allowed_calls_pass_and_the_profiler_is_restored():
    import sys

    def previous(frame, event, arg):
        return None

    sys.setprofile(previous)
    try:
        x = torch.randn(3, 4)
        out = call_learner(lambda v: (v - v.mean(-1, keepdim=True)) / v.std(-1, keepdim=True), x,
                           forbidden=_NO_LAYER_NORM)
        assert out.shape == x.shape
        assert sys.getprofile() is previous
    finally:
        sys.setprofile(None)


def test_as_number_hint_fits_a_fraction_and_nan_apart():
    with pytest.raises(Mistake) as fraction:
        fb.as_number(1.5, "your count of bytes", whole=True)
    assert "fraction" in fraction.value.hint and "NaN" not in fraction.value.hint
    with pytest.raises(Mistake) as nan:
        fb.as_number(float("nan"), "your count of bytes", whole=True)
    assert "NaN" in nan.value.hint


def test_compare_names_the_first_matching_wrong_and_skips_the_ones_that_fail():
    ref = torch.tensor([1.0, 2.0, 3.0])

    def broken():
        raise ValueError("does not apply here")

    wrongs = [fb.Wrong("broken", "-", broken), fb.Wrong("negated", "drop the minus", lambda: -ref),
              fb.Wrong("also negated", "-", lambda: -ref)]
    fb.compare(ref + 1e-7, ref, 1e-5, wrongs)          # close: returns
    with pytest.raises(Mistake) as named:
        fb.compare(-ref, ref, 1e-5, wrongs)
    assert named.value.what == "negated"
    with pytest.raises(Mistake) as generic:
        fb.compare(2 * ref, ref, 1e-5, wrongs)
    assert "largest error is at index (2,)" in generic.value.what
    with pytest.raises(Mistake) as otherwise:
        fb.compare(2 * ref, ref, 1e-5, wrongs, otherwise=Mistake("custom", "hint"))
    assert otherwise.value.what == "custom"
    with pytest.raises(Mistake) as number:   # plain numbers, as a checker of one number has
        fb.compare(-2.0, 2.0, 1e-6, [fb.Wrong("upside down", "-", lambda: -2.0)])
    assert number.value.what == "upside down"


def test_ignores_eps_applies_only_when_eps_changes_the_reference_but_not_the_output():
    x = torch.tensor([[0.01, -0.02, 0.03]], dtype=torch.float64)

    def rms(eps):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)

    ref = rms(1e-3)
    constant = rms(1e-6)            # an answer with eps = 1e-6 written into it
    wrong = fb.ignores_eps(lambda e: constant, constant, ref, rms(fb.SECOND_EPS), 1e-3, 1e-8)
    assert "ignores its eps argument" in wrong.what and wrong.value() is constant
    squared = fb.ignores_eps(lambda e: rms(e * e), constant, ref, rms(fb.SECOND_EPS), 1e-3, 1e-8)
    with pytest.raises(ValueError):  # eps ** 2 follows eps: another mistake
        squared.value()
    big = x * 1e3                    # eps cannot matter here: nothing to tell
    flat = fb.ignores_eps(lambda e: big, big, big, big, 1e-3, 1e-8)
    with pytest.raises(ValueError):
        flat.value()
