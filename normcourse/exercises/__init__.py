"""Exercise checkers: call one with your function and read its feedback.

Every checker returns True or False and prints a short, specific message.
It never raises because of a mistake in your code.
"""

from normcourse.exercises.feedback import Mistake, checker
from normcourse.exercises.layer_norm import (
    check_layer_norm,
    check_layer_norm_backward,
    check_rms_norm,
)

__all__ = [
    "Mistake",
    "checker",
    "check_layer_norm",
    "check_rms_norm",
    "check_layer_norm_backward",
]
