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


def main(**overrides) -> dict:
    """Run the study; returns (and writes ``hudson_bay.json`` with) its numbers next to the paper's."""
    common.enable_x64()
    p = common.params(NAME, DEFAULTS, overrides)
    out = common.out_dir(NAME, p["out"])
    r, metrics, hist, cfg = common.run_config(p["config"], out, p["overrides"], p["verbose"])
    ours = {"final_loss": metrics["final_loss"], "parameters": metrics.get("parameters"),
            "equations": metrics.get("equations"), "discovered": metrics.get("discovered"),
            "refit_parameters": metrics.get("refit_parameters"), "refit_loss": metrics.get("refit_loss"),
            "extrapolation": metrics.get("extrapolation"), "wall_seconds": metrics.get("wall_seconds")}
    title = "Hudson Bay hare (x) and lynx (y): trained to t = 20, extrapolated to t = 50"
    figures = common.truth_only_figure(r, title, out, NAME)
    figures += common.supplementary_figures(r, hist, [s.kind for s in cfg.train.stages], "Hudson Bay",
                                            out, NAME)
    result = {"ours": ours, "paper": common.PAPER[NAME], "config": p["config"],
              "overrides": list(p["overrides"]), "figures": figures}
    common.write_json(out / f"{NAME}.json", result)
    return result


if __name__ == "__main__":
    res = main(verbose=True)
    print(common.json.dumps(common.clean(res["ours"]), indent=2))
