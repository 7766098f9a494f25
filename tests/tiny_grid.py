"""A tiny experiment for the cache and executor tests, also runnable as a script.

``python tests/tiny_grid.py NAME-OF-TINY [experiment options]`` registers the
tiny grids below and runs the ``experiment`` command line on one of them, so
that tests can start real, separate processes (concurrent fills, a killed
worker).
"""

import sys

from normcourse import experiments as ex

SMALL = dict(model={"n_layer": 2, "d_model": 32, "block_size": 16}, train={"steps": 5, "batch_size": 4})


def tiny(name: str = "T", seeds=(0, 1, 2), steps: int = 5) -> ex.Experiment:
    """Two placements x ``seeds`` of a 2-layer, width-32 TinyGPT trained ``steps`` steps (both tiers)."""
    part = ex.Part({"placement": ["pre", "post"], "seed": list(seeds)}, model=SMALL["model"],
                   train={**SMALL["train"], "steps": steps})
    return ex.Experiment(name, f"tiny test grid {name}", "train", ex.preview(part),
                         ex.full(part, why="a test grid"))


TINY = {e.name: e for e in (tiny("T"), tiny("TSLOW", seeds=(0, 1, 2, 3), steps=400),
                            tiny("TMANY", seeds=tuple(range(6)), steps=30))}


def register(experiments=None) -> None:
    (experiments if experiments is not None else ex.EXPERIMENTS).update(TINY)


if __name__ == "__main__":
    register()
    sys.exit(ex.main(sys.argv[1:]))
