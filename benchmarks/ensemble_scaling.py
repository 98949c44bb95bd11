"""Ensemble scaling (issue 8): cost per member of one vmapped ensemble as it grows, and sharded
vs unsharded runs on forced host devices.

    python benchmarks/ensemble_scaling.py            # N = 1, 8, 64, 256; sharding; a paper-size run
    python benchmarks/ensemble_scaling.py --quick    # N = 1, 8, 32; sharding at N = 16

The problem is the UDE paper's scenario 1 (its noise sweep runs 100 of these per noise level):
Lotka–Volterra with known αx, −γy and a 2→5→5→5→2 rbf network (87 parameters), 31 samples on
[0, 3], a fresh 5 % noise draw and network per member, single shooting (SSE + 1e-4‖θ‖²/|θ|),
Tsit5 at rtol = atol = 1e-6, float64. Each measurement runs ``fit_ensemble`` twice and times the
second call (the compiled programs are cached; compile time is reported apart from the first).
Per-member cost is ``wall / (members × steps)``. L-BFGS runs with gtol = ftol = 0 so that every
member takes every step. The sharding part runs in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` for D = 1, 2, 4 (the CPU's cores become
separate XLA devices; the ensemble is split over them with a ``(members, traj)`` mesh).
Results: ``benchmarks/results/ensemble_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

import ude  # noqa: E402
from ude.train.ensemble import fit_ensemble, resample_noise  # noqa: E402

TRUTH = ude.LotkaVolterra(1.3, 0.9, 1.8, 0.8)
U0 = jnp.array([0.44249296, 4.6280594])
RESULTS = HERE / "results" / "ensemble_scaling.json"


def problem(n: int, seed: int = 0):
    """``(models, data, strategy)`` for an ensemble of ``n`` paper-scenario-1 fits."""
    clean = ude.simulate(TRUTH, U0, jnp.linspace(0.0, 3.0, 31), key=seed)
    data = resample_noise(clean, ude.RelativeMeanNoise(0.05), jr.split(jr.key(seed + 1), n))
    known = TRUTH.keep("growth", "death")
    models = eqx.filter_vmap(
        lambda k: ude.UDE(known, ude.MLP(2, 2, width=5, depth=3, activation="rbf", key=k))
    )(jr.split(jr.key(seed), n))
    strategy = ude.SingleShooting(options=ude.SolverOptions("tsit5", rtol=1e-6, atol=1e-6), l2=1e-4)
    return models, data, strategy


def timed_fit(models, data, strategy, stages, *, mesh=None, chunk=None):
    """``(first_call_s, second_call_s, result)``: the first call compiles, the second is timed."""
    chunk = chunk or max(s.steps for s in stages)
    kw = dict(key=jr.key(7), chunk=chunk, verbose=False, mesh=mesh)
    t0 = time.perf_counter()
    fit_ensemble(models, data, strategy, stages, **kw)
    t1 = time.perf_counter()
    res = fit_ensemble(models, data, strategy, stages, **kw)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, res


def scaling(sizes, adam_steps: int, lbfgs_steps: int) -> list[dict]:
    rows = []
    for n in sizes:
        models, data, strategy = problem(n)
        row = {"members": n}
        for name, stage, steps in (
            ("adam", ude.Adam(lr=0.1, steps=adam_steps), adam_steps),
            ("lbfgs", ude.LBFGS(steps=lbfgs_steps, gtol=0.0, ftol=0.0), lbfgs_steps),
        ):
            first, second, res = timed_fit(models, data, strategy, [stage])
            row[name] = {
                "steps": steps,
                "wall_s": second,
                "first_call_s": first,
                "ms_per_member_step": 1e3 * second / (n * steps),
                "rejected": int(res.rejected.sum()),
                "median_final_loss": float(np.nanmedian(res.final_losses)),
            }
        print(json.dumps(row), flush=True)
        rows.append(row)
    base = rows[0]
    for r in rows:
        for name in ("adam", "lbfgs"):
            r[name]["speedup_per_member_vs_first"] = (
                base[name]["ms_per_member_step"] / r[name]["ms_per_member_step"]
            )
    return rows


SHARD_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {here!r})
import ensemble_scaling as es
import ude
from ude.parallel import make_mesh
n, steps = {n}, {steps}
models, data, strategy = es.problem(n)
out = {{"devices": len(es.jax.devices())}}
stage = [ude.Adam(lr=0.1, steps=steps)]
first0, t0, r0 = es.timed_fit(models, data, strategy, stage)
out["unsharded"] = {{"wall_s": t0, "first_call_s": first0}}
if out["devices"] > 1:
    first1, t1, r1 = es.timed_fit(models, data, strategy, stage, mesh=make_mesh())
    diff = float(abs(r0.final_losses - r1.final_losses).max())
    out["sharded"] = {{"wall_s": t1, "first_call_s": first1, "max_abs_diff_final_loss": diff}}
print("RESULT " + json.dumps(out))
"""


def sharding(n: int, steps: int, devices=(1, 2, 4)) -> dict:
    out = {"members": n, "adam_steps": steps, "runs": {}}
    for d in devices:
        env = dict(
            os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={d}", JAX_PLATFORMS="cpu"
        )
        script = SHARD_SCRIPT.format(root=str(ROOT), here=str(HERE), n=n, steps=steps)
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            out["runs"][str(d)] = {"error": proc.stderr[-2000:]}
            continue
        r = json.loads(lines[-1][7:])
        if "sharded" in r:
            r["speedup_sharded_vs_unsharded"] = r["unsharded"]["wall_s"] / r["sharded"]["wall_s"]
        out["runs"][str(d)] = r
        print(f"devices={d}", json.dumps(r), flush=True)
    return out


def paper_run(n: int, lbfgs_steps: int) -> dict:
    """One realistic ensemble: Adam(0.1) × 200 then L-BFGS (gtol 1e-6) on ``n`` members,
    compilation included (as the noise sweep would pay it once per process)."""
    models, data, strategy = problem(n)
    stages = [ude.Adam(lr=0.1, steps=200), ude.LBFGS(steps=lbfgs_steps, gtol=1e-6)]
    t0 = time.perf_counter()
    res = fit_ensemble(models, data, strategy, stages, key=jr.key(7), chunk=100, verbose=False)
    wall = time.perf_counter() - t0
    out = {
        "members": n,
        "stages": ["adam x 200", f"lbfgs x {lbfgs_steps} (gtol 1e-6)"],
        "wall_s_with_compile": wall,
        "s_per_fit": wall / n,
        "steps_run": int(res.history["loss"].shape[1]),
        "converged": int((res.stopped[:, -1] == "converged").sum()),
        "rejected_total": int(res.rejected.sum()),
        "final_loss_quantiles": np.nanquantile(res.final_losses, [0.1, 0.5, 0.9]).tolist(),
        "failed": int((~res.ok).sum()),
    }
    print("paper run", json.dumps(out), flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, no paper-size run")
    args = ap.parse_args(argv)
    from common import machine  # noqa: PLC0415 - benchmarks/common.py

    if args.quick:
        sizes, adam, lbfgs, shard_n, shard_steps = (1, 8, 32), 20, 5, 16, 20
    else:
        sizes, adam, lbfgs, shard_n, shard_steps = (1, 8, 64, 256), 20, 10, 64, 20
    payload = {
        "machine": machine(),
        "quick": args.quick,
        "problem": "paper scenario 1: 87-parameter rbf UDE, 31 samples, tsit5 1e-6, float64",
        "scaling": scaling(sizes, adam, lbfgs),
        "sharding": sharding(shard_n, shard_steps),
    }
    if not args.quick:
        payload["paper_run"] = paper_run(100, 1000)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2))
    print(f"wrote {RESULTS}")
    return payload


if __name__ == "__main__":
    main()
