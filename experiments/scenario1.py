"""The UDE paper's main figure (scenario 1): Lotka–Volterra, 5 % noise, t ∈ [0, 3].

Runs ``configs/lotka_volterra.yaml`` through the ``ude`` pipeline (fit → discovery → refit →
extrapolation to t = 50), then draws panels A (UDE error over time, log), B (network's U₂ along
the trained trajectory vs the true term, 3-D), C (data, truth and recovered model to t = 50, end
of the training data marked), and the supplementary loss curve, trajectory and missing-term plots.

    python experiments/scenario1.py
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments import common

DEFAULTS = dict(config="lotka_volterra", overrides=(), out=None, verbose=False)
NAME = "scenario1"


def summarise(metrics: dict, hist: dict) -> dict:
    loss = hist["loss"]
    stage = hist["stage"]
    out = {
        "loss_first": float(loss[0]) if len(loss) else None,
        "loss_after_adam": float(loss[stage == 1][0]) if (stage == 1).any() else None,
        "final_loss": metrics["final_loss"],
        "noise_sse": metrics.get("noise_floor"),
        "discovered": metrics.get("discovered"),
        "equations": metrics.get("equations"),
        "refit_loss": metrics.get("refit_loss"),
        "coefficients": metrics.get("coefficients"),
        "extrapolation": metrics.get("extrapolation"),
        "parameters": metrics.get("parameters"),
        "refit_parameters": metrics.get("refit_parameters"),
        "fit_seconds": metrics["fit"].get("wall_seconds"),
        "wall_seconds": metrics.get("wall_seconds"),
    }
    d = metrics.get("discovered") or {}
    names = list(d)
    if len(names) == 2:
        out["U1_xy"] = d[names[0]].get("x*y")
        out["U2_xy"] = d[names[1]].get("x*y")
    osc = (metrics.get("extrapolation") or {}).get("oscillation") or {}
    if "x" in osc:
        out.update(
            prey_peak=osc["x"]["peak_height"],
            true_prey_peak=osc["x"]["true_peak_height"],
            period=osc["x"]["period"],
            true_period=osc["x"]["true_period"],
        )
    return out


def main(**overrides) -> dict:
    """Run the scenario; returns (and writes ``<name>.json`` with) its numbers next to the
    paper's."""
    return common.config_study(
        NAME, DEFAULTS, overrides, summarise, "Scenario 1: Lotka–Volterra, 5 % noise, t ∈ [0, 3]"
    )


if __name__ == "__main__":
    res = main(verbose=True)
    print(common.json.dumps(common.clean(res["ours"]), indent=2))
