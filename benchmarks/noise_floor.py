"""The quality gate's noise floor estimated from data alone, against the true noise, on every
shipped config with simulated data (where the truth, hence the noise drawn, is known).

    python benchmarks/noise_floor.py        # a few seconds; no fitting

For each config the training data are built as ``ude run`` builds them; ``estimate`` is
``ude.quality.estimate_noise_floor`` (each observed sample against the cubic through its
neighbours) under the config's loss, ``noise`` the same loss of the noise actually drawn
(data minus truth), ``ratio`` their quotient: above 1 the gate is more lenient than it would be
with the truth, below 1 stricter. Results: ``benchmarks/results/noise_floor.json``.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from ude.config import load_config  # noqa: E402
from ude.pipeline.builders import split_data  # noqa: E402
from ude.pipeline.dataset import input_data  # noqa: E402
from ude.quality import estimate_noise_floor, estimate_noise_sd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "noise_floor.json"


def one(path: Path) -> dict | None:
    cfg = load_config(path)
    if cfg.truth is None:
        return None
    train, _ = split_data(cfg, input_data(cfg))
    st = cfg.train.strategy
    mask = np.asarray(train.mask)
    noise = np.where(mask, np.asarray(train.ys) - np.asarray(train.y_true), 0.0)
    w = np.ones(train.n_states) if st.weights is None else np.asarray(st.weights)
    true = float(np.sum(noise**2 * w))
    if st.loss == "mse":
        true /= mask.sum()
    est = estimate_noise_floor(train, st.loss, st.weights)
    sd_true = np.sqrt(np.sum(noise**2, axis=(0, 1)) / np.maximum(mask.sum(axis=(0, 1)), 1))
    return {
        "config": path.stem,
        "experiments": train.n_traj,
        "points": list(train.lengths),
        "estimate": est,
        "noise": true,
        "ratio": None if est is None else est / true,
        "sd_estimate": [float(x) for x in estimate_noise_sd(train)],
        "sd_noise": [float(x) for x in sd_true],
    }


def main() -> None:
    t0 = time.perf_counter()
    rows = [r for p in sorted((ROOT / "configs").glob("*.yaml")) if (r := one(p)) is not None]
    out = {
        "machine": f"{platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d"),
        "seconds": time.perf_counter() - t0,
        "rows": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    for r in rows:
        print(
            f"{r['config']:<28} estimate {r['estimate']:.4g}  noise {r['noise']:.4g}  "
            f"ratio {r['ratio']:.3g}"
        )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
