"""Run every shipped config (``configs/*.yaml``) through the ``ude`` pipeline and collect the
headline numbers of each in ``experiments/out/all_configs/all_configs.json`` (the README's results
table is written from it by ``experiments/report.py``).

    python experiments/all_configs.py                   # every config
    python experiments/all_configs.py sir hudson_bay    # some of them
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments import common

NAME = "all_configs"


def summarise(metrics: dict) -> dict:
    ext = metrics.get("extrapolation") or {}
    coef = metrics.get("coefficients") or {}
    return {
        "final_loss": metrics.get("final_loss"),
        "noise_floor": metrics.get("noise_floor"),
        "fit_status": (metrics.get("fit") or {}).get("status"),
        "loss_to_floor": (metrics.get("fit") or {}).get("loss_to_floor"),
        "floor_source": (metrics.get("fit") or {}).get("floor_source"),
        "refit_loss": metrics.get("refit_loss"),
        "equations": metrics.get("equations"),
        "parameters": metrics.get("refit_parameters") or metrics.get("parameters"),
        "exact_support": coef.get("exact_support"),
        "max_coefficient_error": coef.get("max_relative_error"),
        "extrapolation_model": ext.get("model"),
        "extrapolation_t_end": ext.get("t_end"),
        "extrapolation_rmse": ext.get("rmse"),
        "rmse_train": ext.get("rmse_train"),
        "wall_seconds": metrics.get("wall_seconds"),
        **_experiments(metrics.get("experiments")),
    }


def _experiments(ex: dict | None) -> dict:
    """A dataset of experiments: how many (trained on, held out), their points, and the pooled
    RMSE on the held-out experiments of each model (UDE, known physics alone, discovered)."""
    if not ex:
        return {}
    per = ex["per_experiment"]
    return {
        "experiments_trained": len(ex["trained"]),
        "experiments_held_out": len(ex["held_out"]),
        "experiment_points": [per[n]["points"] for n in per],
        "held_out_rmse": (ex.get("pooled_rmse") or {}).get("held_out"),
    }


def main(configs=None, out=None, verbose: bool = False) -> dict:
    """Run ``configs`` (names; default all shipped ones); returns and writes their summaries."""
    common.enable_x64()
    import ude

    names = list(configs) if configs else sorted(p.stem for p in common.CONFIGS.glob("*.yaml"))
    folder = common.out_dir(NAME, out)
    path = folder / f"{NAME}.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for name in names:
        cfg = ude.load_config(common.CONFIGS / f"{name}.yaml")
        run = folder / "runs" / name
        if run.exists():
            shutil.rmtree(run)
        t0 = time.perf_counter()
        try:
            metrics = ude.run_experiment(cfg, run, verbose=verbose)
            results[name] = {"ok": True, **summarise(metrics)}
        except Exception as e:  # noqa: BLE001 - a failed config is reported in the table
            results[name] = {
                "ok": False,
                "error": f"{type(e).__name__}: {e}",
                "wall_seconds": time.perf_counter() - t0,
            }
        print(f"{name}: {json.dumps(common.clean(results[name]))}", flush=True)
        common.write_json(path, results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:] or None, verbose=False)
