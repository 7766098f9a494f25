"""Repository-wide pytest hooks.

Every chapter must execute in at most 60 s on a 2-core CPU.  When notebooks
run under nbval, add up the time of each notebook's cells (kernel start
included) and fail the session if one is over budget.
"""

import collections
import pathlib

NOTEBOOK_BUDGET_S = 60.0
_notebook_seconds = collections.defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.section("notebook execution time (budget %.0f s each)" % NOTEBOOK_BUDGET_S)
    for path, seconds in sorted(_notebook_seconds.items()):
        flag = "  OVER BUDGET" if seconds > NOTEBOOK_BUDGET_S else ""
        terminalreporter.write_line(f"{seconds:6.1f} s  {pathlib.Path(path).name}{flag}")


def pytest_sessionfinish(session, exitstatus):
    over = {p: s for p, s in _notebook_seconds.items() if s > NOTEBOOK_BUDGET_S}
    if over and exitstatus == 0:
        session.exitstatus = 1
