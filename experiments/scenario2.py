"""The UDE paper's scenario 2: partial observation. x at 61 points on [0, 6], y only at t = 0, 1.2,
2.4, 3.6, 4.8, 6; 1 % noise; γ learned; multiple shooting over 5 segments. Same panels as
scenario 1, training ending at t = 6.

    python experiments/scenario2.py
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments import common
from experiments.scenario1 import summarise

DEFAULTS = dict(config="lotka_volterra_partial", overrides=(), out=None, verbose=False)
NAME = "scenario2"


def summarise_partial(metrics: dict, hist: dict) -> dict:
    ours = summarise(metrics, hist)
    ours["gamma"] = (metrics.get("parameters") or {}).get("gamma")
    ours["gamma_after_refit"] = (metrics.get("refit_parameters") or {}).get("gamma")
    return ours


def main(**overrides) -> dict:
    """Run the scenario; returns (and writes ``scenario2.json`` with) its numbers next to the
    paper's."""
    return common.config_study(
        NAME,
        DEFAULTS,
        overrides,
        summarise_partial,
        "Scenario 2: y seen at 6 times, 1 % noise, γ learned",
    )


if __name__ == "__main__":
    res = main(verbose=True)
    print(common.json.dumps(common.clean(res["ours"]), indent=2))
