"""Command line: ``python -m normcourse <command> [options]``.

Commands
  bench        time the norm kernels, checked first (GPU: vs torch, torch.compile, Liger;
               CPU: the from-scratch norms vs torch, labelled CPU); --help for options
  experiment   list, estimate (--dry-run) or run a named grid (preview or full; local or Slurm)
  selfcheck    check that Triton computes on this machine (interpreter or CUDA) and that
               the library's LayerNorm kernel matches its float64 reference
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Each command lives in its own module with a ``main(argv) -> int``; importing
# lazily keeps ``--help`` instant and lets a module's heavy imports stay local.
COMMANDS = {
    "bench": "normcourse.bench",
    "experiment": "normcourse.experiments",
    "selfcheck": "normcourse.runtime",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if command == "selfcheck":
        # selfcheck takes no options: parse anyway, so that a typo exits with status 2
        # and a message instead of being ignored (and --help says so)
        argparse.ArgumentParser(prog="python -m normcourse selfcheck",
                                description="Check that Triton computes on this machine and that the "
                                            "library's LayerNorm kernel matches its "
                                            "float64 reference.").parse_args(rest)
    module = importlib.import_module(COMMANDS[command])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
