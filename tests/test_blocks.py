"""Each placement computes exactly its formula, built by hand from the block's own parts."""

import math

import pytest
import torch

from normcourse.blocks import NORMS, PLACEMENTS, Block, DyT, deepnorm_constants, make_norm

torch.set_num_threads(1)

D, H, L = 32, 4, 6


def by_hand(b, x):
    """The block's formula from the issue, written with its submodules."""
    A, M = b.attn, b.mlp
    p = b.placement
    if p == "post":
        h = b.norm_attn(x + A(x))
        return b.norm_mlp(h + M(h))
    if p == "pre":
        h = x + A(b.norm_attn(x))
        return h + M(b.norm_mlp(h))
    if p == "peri":
        h = x + b.norm_attn_out(A(b.norm_attn_in(x)))
        return h + b.norm_mlp_out(M(b.norm_mlp_in(h)))
    if p == "b2t":
        h = b.norm_attn(x + A(x))
        return b.norm_mlp(h + M(h) + x)
    if p == "deepnorm":
        a = (2 * L) ** 0.25
        h = b.norm_attn(a * x + A(x))
        return b.norm_mlp(a * h + M(h))
    h = x + A(x)
    return h + M(h)


def randomise_norms(block):
    # start values are 1 and 0: perturb them so that a swapped norm would show
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in block.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm", "dyt"])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_block_matches_formula(placement, norm):
    torch.manual_seed(0)
    b = Block(D, H, placement=placement, norm=norm, n_layer=L, layer_index=2)
    randomise_norms(b)
    x = torch.randn(3, 8, D) * 2
    torch.testing.assert_close(b(x), by_hand(b, x), rtol=0, atol=0)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_each_norm_is_a_separate_module(placement):
    b = Block(D, H, placement=placement, n_layer=L)
    norms = [m for n, m in b.named_children() if n.startswith("norm")]
    assert len({id(m) for m in norms}) == len(norms) == {"peri": 4, "none": 0}.get(placement, 2)


def test_deepnorm_upweights_the_skip_not_the_branch():
    # LN(a*x + F(x)), not LN(x + a*F(x)): with the branch silenced, the output is LN(a*x) = LN(x)
    torch.manual_seed(0)
    b = Block(D, H, placement="deepnorm", n_layer=L)
    alpha, beta = deepnorm_constants(L)
    assert b.alpha == pytest.approx((2 * L) ** 0.25) and beta == pytest.approx((8 * L) ** -0.25)
    x = torch.randn(2, 5, D)
    h_hand = b.norm_attn(alpha * x + b.attn(x))
    h_wrong = b.norm_attn(x + alpha * b.attn(x))
    h = b.norm_attn(b.alpha * x + b.attn(x))
    assert torch.equal(h, h_hand) and not torch.allclose(h, h_wrong)


def test_dyt_formula_and_init():
    m = DyT(D, alpha_init=0.7)
    assert m.alpha.item() == pytest.approx(0.7) and m.alpha.numel() == 1 and m.alpha.requires_grad
    with torch.no_grad():
        m.weight.normal_(), m.bias.normal_()
    x = torch.randn(4, D)
    torch.testing.assert_close(m(x), m.weight * torch.tanh(0.7 * x) + m.bias)


@pytest.mark.parametrize("kind", NORMS)
def test_norm_parameters_start_at_one_and_zero(kind):
    m = make_norm(kind, D)
    for name, p in m.named_parameters():
        if name == "alpha":
            continue
        assert torch.all(p == (1.0 if name == "weight" else 0.0)), name


def test_layer_norm_scaling_multiplies_norm_outputs():
    torch.manual_seed(0)
    b = Block(D, H, placement="pre", layer_index=3, depth_scaled_norm=True)
    x = torch.randn(2, 5, D)
    torch.testing.assert_close(b.norm_attn(x), b.norm_attn.norm(x) / math.sqrt(4))


def test_errors_name_the_choices():
    with pytest.raises(ValueError, match="pre"):
        Block(D, H, placement="sandwich")
    with pytest.raises(ValueError, match="layernorm"):
        make_norm("batchnorm", D)
    with pytest.raises(ValueError, match="divisible"):
        Block(30, 4)


class _BrokenKernels:
    """A meta-path finder whose ``normcourse.kernels`` fails as a bug inside it would (or is absent)."""

    def __init__(self, error):
        self.error = error

    def find_spec(self, name, path=None, target=None):
        import importlib.util
        return importlib.util.spec_from_loader(name, self) if name == "normcourse.kernels" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise self.error


@pytest.fixture
def kernels_import(monkeypatch):
    """Make the next ``from normcourse import kernels`` raise the given error."""
    import sys

    import normcourse

    def install(error):
        for name in [m for m in sys.modules if m == "normcourse.kernels" or m.startswith("normcourse.kernels.")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.delattr(normcourse, "kernels", raising=False)
        monkeypatch.setattr(sys, "meta_path", [_BrokenKernels(error)] + sys.meta_path)
    return install


def test_a_missing_kernels_package_falls_back_to_torch(kernels_import):
    from normcourse.blocks import _kernel_norm
    kernels_import(ImportError("No module named 'normcourse.kernels'"))
    assert _kernel_norm("layernorm", 8, 1e-5) is None


def test_a_bug_inside_the_kernels_package_is_not_swallowed(kernels_import):
    from normcourse.blocks import _kernel_norm
    kernels_import(NameError("name 'BLOCK' is not defined"))
    with pytest.raises(NameError, match="BLOCK"):
        _kernel_norm("rmsnorm", 8, 1e-6)


def test_the_kernel_norm_is_built_when_the_package_imports():
    from normcourse import kernels
    from normcourse.blocks import _kernel_norm
    m = _kernel_norm("rmsnorm", 8, 1e-6)
    assert isinstance(m, kernels.RMSNorm) and m.eps == 1e-6
