"""``precision``: the fused ude step in float32 and float64 (same problem, same tolerances).

float64 is switched on for this process; the float32 run keeps float32 model and data. Reports the
adaptive solver's steps and rejected steps at the initial and at the trained parameters, since a
tight tolerance in float32 can make the controller reject more steps.
"""

from __future__ import annotations

import jax
import udestep
from common import ATOL, FUSED, RTOL, compare, problem, ratio

NAME = "precision"
FULL_ONLY = True


def run(mode: str) -> dict:
    jax.config.update("jax_enable_x64", True)
    import equinox as eqx

    from ude.model import partition
    from ude.solve import SolverOptions, solve

    repeats = 5 if mode == "quick" else 15
    cands, stats = {}, {}
    for dtype in ("float32", "float64"):
        model, data = problem(dtype)
        options = SolverOptions("tsit5", rtol=RTOL, atol=ATOL)
        c, _, many = udestep.ude_step(model, data, options, FUSED)
        trained = eqx.combine(many(c)[0][0], partition(model)[1])
        s0 = solve(model, data.ys[0, 0], data.ts, options)
        s1 = solve(trained, data.ys[0, 0], data.ts, options)
        stats[dtype] = {
            "steps_initial": int(s0.num_steps),
            "rejected_initial": int(s0.num_rejected),
            "steps_after_100": int(s1.num_steps),
            "rejected_after_100": int(s1.num_rejected),
        }
        cands[dtype] = ((lambda many=many, c=c: many(c)), FUSED)
    res = compare(cands, repeats)
    r = ratio(res, "float64", "float32")
    rows = [
        {"dtype": k, "wall ms/step": v["wall_ms"], "cpu ms/step": v["cpu_ms"], **stats[k]}
        for k, v in res.items()
    ]
    rows.append(
        {
            "dtype": "ratio float64/float32",
            "wall ms/step": r["paired_wall"],
            "cpu ms/step": r["paired_cpu"],
        }
    )
    return {
        "timings": res,
        "solver_stats": stats,
        "ratio_f64_f32": r,
        "rows": rows,
        "columns": [
            "dtype",
            "wall ms/step",
            "cpu ms/step",
            "steps_initial",
            "rejected_initial",
            "steps_after_100",
            "rejected_after_100",
        ],
    }
