"""Exercise checkers: call one with your function and read its feedback.

Every checker returns True or False and prints a short, specific message.
It never raises because of a mistake in your code.

Chapter by chapter:

- 1 Why deep networks break: ``check_fraction_saturated``, ``check_update_to_data_ratio``
- 2 Residual connections: ``check_residual_jacobian``, ``check_gpt2_init``
- 3 BatchNorm vs LayerNorm: ``check_batch_norm_train``, ``check_masked_batch_norm``
- 4 LayerNorm from scratch: ``check_layer_norm``, ``check_layer_norm_backward``, ``check_rms_norm``
- 5 RMSNorm and DyT: ``check_rms_norm_backward``, ``check_dyt``
- 6 LayerNorm in Triton: ``check_layer_norm_bytes``, ``check_rms_norm_kernel`` (needs
  triton; imported on first use)
- 7 Fusing the residual add: ``check_add_norm_bytes``, ``check_add_rms_norm_backward``
- 8 Where the norm goes: ``check_pre_ln_block``, ``check_deepnorm_residual``
- 9 Training deep stacks: ``check_classify_run``, ``check_count_spikes``
- 10 Depth that does not pay: ``check_adjacent_cosine``, ``check_forward_skipping``
- 11 Life without normalization: ``check_adaln_zero``, ``check_strip_layer_norms``
- 12 Diagnostics in practice: ``check_update_data_ratios``, ``check_flag_massive``
"""

from normcourse.exercises.batch_vs_layer import check_batch_norm_train, check_masked_batch_norm
from normcourse.exercises.depth import check_adjacent_cosine, check_forward_skipping
from normcourse.exercises.diagnostics_practice import check_flag_massive, check_update_data_ratios
from normcourse.exercises.feedback import Mistake, checker, yours_or_reference
from normcourse.exercises.fused_add import (
    check_add_norm_bytes,
    check_add_rms_norm_backward,
    check_layer_norm_bytes,
)
from normcourse.exercises.layer_norm import (
    check_layer_norm,
    check_layer_norm_backward,
    check_rms_norm,
)
from normcourse.exercises.rms_and_dyt import check_dyt, check_rms_norm_backward
from normcourse.exercises.no_norm import check_adaln_zero, check_strip_layer_norms
from normcourse.exercises.placements import (
    check_classify_run,
    check_count_spikes,
    check_deepnorm_residual,
    check_pre_ln_block,
)
from normcourse.exercises.residuals import check_gpt2_init, check_residual_jacobian
from normcourse.exercises.signal_propagation import (
    check_fraction_saturated,
    check_update_to_data_ratio,
)

__all__ = [
    "Mistake",
    "checker",
    "yours_or_reference",
    "check_fraction_saturated",
    "check_update_to_data_ratio",
    "check_residual_jacobian",
    "check_gpt2_init",
    "check_batch_norm_train",
    "check_masked_batch_norm",
    "check_layer_norm",
    "check_rms_norm",
    "check_layer_norm_backward",
    "check_rms_norm_backward",
    "check_dyt",
    "check_layer_norm_bytes",
    "check_rms_norm_kernel",
    "check_add_norm_bytes",
    "check_add_rms_norm_backward",
    "check_pre_ln_block",
    "check_deepnorm_residual",
    "check_classify_run",
    "check_count_spikes",
    "check_adjacent_cosine",
    "check_forward_skipping",
    "check_adaln_zero",
    "check_strip_layer_norms",
    "check_update_data_ratios",
    "check_flag_massive",
]


def __getattr__(name):
    # The Triton checker imports triton, which CPU users may not have installed.
    if name == "check_rms_norm_kernel":
        from normcourse.exercises.triton_kernels import check_rms_norm_kernel

        return check_rms_norm_kernel
    raise AttributeError(f"module 'normcourse.exercises' has no attribute {name!r}")
