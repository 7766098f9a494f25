"""Shared by the checker tests: run a checker and capture the feedback it prints."""


def run(check, fn, capsys):
    """``(passed, printed feedback)`` of ``check(fn)``."""
    ok = check(fn)
    return ok, capsys.readouterr().out


def _not_implemented(*args):
    """A learner's untouched stub."""
    raise NotImplementedError


def assert_names_mistake(check, fn, message, capsys):
    """``check(fn)`` fails with a friendly message containing ``message`` and a hint, no traceback."""
    ok, out = run(check, fn, capsys)
    assert ok is False
    assert message in out, out
    assert "Hint:" in out
    assert "Traceback" not in out
