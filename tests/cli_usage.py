"""What the command-line tests share: a run that must not happen, and the usage-error check."""

import pytest


def must_not_run(*args, **kwargs):
    raise AssertionError("the command ran although its arguments were bad")


def assert_usage_error(main, argv, message, capsys):
    """``main(argv)`` stops with argparse's usage error (exit status 2) and prints ``message``."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
