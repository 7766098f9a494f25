"""normcourse: normalization and residual paths in transformers, from scratch to Triton.

The package behind the normcourse book.  Import what a chapter builds:

- ``normcourse.norms``: LayerNorm and RMSNorm from scratch (hand-derived backward).
- ``normcourse.exercises``: checkers that give learners specific feedback.
- ``normcourse.runtime``: device choice and the Triton interpreter switch.

Importing ``normcourse`` itself is cheap: it configures Triton (see
``normcourse.runtime``) and nothing else.
"""

from normcourse.runtime import configure_triton, pick_device

# TRITON_INTERPRET is read when a @triton.jit function is *defined*, so the
# switch has to be thrown before any module holding kernels is imported.
configure_triton()

__version__ = "0.1.0"
__all__ = ["pick_device", "configure_triton", "__version__"]
