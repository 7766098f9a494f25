"""Exercise checkers: call one with your function and read its feedback.

Every checker returns True or False and prints a short, specific message.
It never raises because of a mistake in your code.
"""

from normcourse.exercises.feedback import Mistake, checker

__all__ = ["Mistake", "checker"]
