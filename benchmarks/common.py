"""Shared pieces of the benchmark suites: the test problem, interleaved timing, machine info.

The problem is the issue-7 Lotka–Volterra UDE: known ``αx``, ``−γy`` plus an MLP 2→32→32→2 (tanh),
21 samples on [0, 5], Tsit5 at rtol = atol = 1e-6, Adam, float32 unless a suite says otherwise.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

TRUTH_PARAMS = (1.3, 0.9, 1.8, 0.8)
Y0 = (0.44249296, 4.6280594)
T1, N_TIMES = 5.0, 21
WIDTH, DEPTH = 32, 2
RTOL = ATOL = 1e-6
LR = 1e-3
FUSED = 100  # steps per lax.scan in fused mode


# ------------------------------------------------------------------------------------------ problem
def problem(dtype="float32", noise=0.0, seed=0):
    """``(model, data)``: the LV UDE (fresh network from ``seed``) and its dataset in ``dtype``."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    from ude.data import Dataset
    from ude.model import UDE
    from ude.nn import MLP
    from ude.physics import LotkaVolterra
    from ude.solve import SolverOptions, solve

    dt = jnp.dtype(dtype)
    cast = lambda tree: jax.tree_util.tree_map(  # noqa: E731
        lambda a: a.astype(dt) if eqx.is_inexact_array(a) else a, tree
    )
    truth = cast(LotkaVolterra(*TRUTH_PARAMS))
    ts = jnp.linspace(0.0, T1, N_TIMES, dtype=dt)
    y0 = jnp.asarray(Y0, dt)
    ys = solve(truth, y0, ts, SolverOptions("tsit5", rtol=1e-9, atol=1e-9)).ys
    ys = ys + noise * jnp.mean(jnp.abs(ys), axis=0) * jr.normal(jr.key(seed + 1), ys.shape, dt)
    data = Dataset(ts=ts, ys=ys[None], state_names=("x", "y"))
    net = MLP(2, 2, width=WIDTH, depth=DEPTH, activation="tanh", key=jr.key(seed), dtype=dt)
    model = cast(UDE(truth.keep("growth", "death"), net))
    return model, data


# ------------------------------------------------------------------------------------------- timing
def block(x):
    import jax

    return jax.block_until_ready(x)


def timed(fn):
    """``(result, wall_seconds, cpu_seconds)`` of one call (blocked until ready)."""
    w, c = time.perf_counter(), time.process_time()
    out = block(fn())
    return out, time.perf_counter() - w, time.process_time() - c


def compare(cands: dict, repeats: int, warmup: int = 1) -> dict:
    """Time several candidates round-robin, so machine load hits all of them alike.

    ``cands``: name -> ``(thunk, steps)``; a thunk runs ``steps`` optimiser steps. Warm-up calls
    (compilation included) are excluded. Returns name -> dict of per-step medians in ms (``wall``,
    ``cpu``: process CPU time, which other processes on a shared machine disturb less), ``wall_min``
    and the raw per-step samples.
    """
    for _ in range(warmup):
        for thunk, _ in cands.values():
            block(thunk())
    samples = {k: ([], []) for k in cands}
    for _ in range(repeats):
        for k, (thunk, steps) in cands.items():
            _, w, c = timed(thunk)
            samples[k][0].append(1e3 * w / steps)
            samples[k][1].append(1e3 * c / steps)
    out = {}
    for k, (w, c) in samples.items():
        out[k] = {
            "wall_ms": statistics.median(w),
            "cpu_ms": statistics.median(c),
            "wall_min_ms": min(w),
            "repeats": repeats,
            "steps_per_call": cands[k][1],
            "wall_samples_ms": [round(x, 4) for x in w],
            "cpu_samples_ms": [round(x, 4) for x in c],
        }
    return out


def ratio(res: dict, a: str, b: str) -> dict:
    """``a / b`` on wall and CPU medians, and the median of the paired per-repeat ratios."""
    wa, wb = res[a]["wall_samples_ms"], res[b]["wall_samples_ms"]
    ca, cb = res[a]["cpu_samples_ms"], res[b]["cpu_samples_ms"]
    return {
        "wall": res[a]["wall_ms"] / res[b]["wall_ms"],
        "cpu": res[a]["cpu_ms"] / res[b]["cpu_ms"],
        "paired_wall": statistics.median(x / y for x, y in zip(wa, wb, strict=True)),
        "paired_cpu": statistics.median(x / y for x, y in zip(ca, cb, strict=True)),
    }


class TraceCounter:
    """Counts how often a Python function is traced (each new trace of a jitted function is a
    compile)."""

    def __init__(self):
        self.n = 0

    def __call__(self, *_, **__):
        self.n += 1


# ------------------------------------------------------------------------------------- machine info
def machine() -> dict:
    import diffrax
    import equinox
    import jax
    import jaxlib
    import optax

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "diffrax": diffrax.__version__,
        "equinox": equinox.__version__,
        "optax": optax.__version__,
        "backend": jax.default_backend(),
        "load_average": load,
        "x64": bool(jax.config.jax_enable_x64),
    }


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    return path


def table(rows: list[dict], cols: list[str]) -> str:
    """A plain-text (and Markdown) table of ``rows`` restricted to ``cols``."""

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [
        max(len(c), *(len(x[i]) for x in cells)) if cells else len(c) for i, c in enumerate(cols)
    ]

    def line(xs):
        return "| " + " | ".join(x.ljust(w) for x, w in zip(xs, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cols), sep] + [line(x) for x in cells])
