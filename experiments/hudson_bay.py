"""Hudson Bay hare and lynx pelts (real data, 1900–1920, each series divided by its maximum):
α and γ learned, trained to t = 20, extrapolated to t = 50.

    python experiments/hudson_bay.py
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments import common

DEFAULTS = dict(config="hudson_bay", overrides=(), out=None, verbose=False)
NAME = "hudson_bay"


def summarise(metrics: dict, hist: dict) -> dict:
    return {
        k: metrics.get(k)
        for k in (
            "final_loss",
            "parameters",
            "equations",
            "discovered",
            "refit_parameters",
            "refit_loss",
            "extrapolation",
            "wall_seconds",
        )
    }


def main(**overrides) -> dict:
    """Run the study; returns (and writes ``hudson_bay.json`` with) its numbers next to the
    paper's."""
    return common.config_study(
        NAME,
        DEFAULTS,
        overrides,
        summarise,
        "Hudson Bay hare (x) and lynx (y): trained to t = 20, extrapolated to t = 50",
        main_figure=common.truth_only_figure,
        supplementary_title="Hudson Bay",
    )


if __name__ == "__main__":
    res = main(verbose=True)
    print(common.json.dumps(common.clean(res["ours"]), indent=2))
