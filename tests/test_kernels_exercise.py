"""check_rms_norm_kernel accepts a correct learner kernel and explains common mistakes."""

# normcourse first: it sets TRITON_INTERPRET on a machine without a GPU, and
# Triton reads it when ``triton`` itself is imported (tl.sum is a @jit function).
import normcourse  # noqa: F401  isort: skip
import triton  # noqa: E402  isort: skip
import triton.language as tl  # noqa: E402  isort: skip

from normcourse.exercises.triton_kernels import check_rms_norm_kernel


@triton.jit
def good_kernel(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def no_load_mask_kernel(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def no_store_mask_kernel(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty))


@triton.jit
def block_mean_kernel(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / BLOCK_N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


def test_correct_kernel_passes(capsys):
    assert check_rms_norm_kernel(good_kernel)
    assert "correct" in capsys.readouterr().out


def test_missing_load_mask_is_named(capsys):
    assert not check_rms_norm_kernel(no_load_mask_kernel)
    assert "read past the end of the row" in capsys.readouterr().out


def test_missing_store_mask_is_named(capsys):
    assert not check_rms_norm_kernel(no_store_mask_kernel)
    assert "wrote outside the rows" in capsys.readouterr().out


def test_dividing_by_block_size_is_named(capsys):
    assert not check_rms_norm_kernel(block_mean_kernel)
    assert "BLOCK_N instead of N" in capsys.readouterr().out


def test_not_a_kernel(capsys):
    assert not check_rms_norm_kernel(lambda *a: None)
    assert "failed" in capsys.readouterr().out


def test_stub_kernel_is_reported_as_not_implemented(capsys):
    import triton
    import triton.language as tl

    from normcourse.exercises import check_rms_norm_kernel

    @triton.jit
    def stub(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
        raise NotImplementedError("your code here")

    assert check_rms_norm_kernel(stub) is False
    assert "not implemented yet" in capsys.readouterr().out
