"""``step``: the ude training step against hand-written diffrax steps and the fixed-step floor.

Hand-written references (``handwritten.py``): diffrax as a user writes it (``diffrax.Tsit5``,
``SaveAt(ts)``, default adjoint), and the same with ude's solver configuration spelled out by hand
(``same_config``: isolates the overhead of ude's training machinery from its faster solver). The
floor takes as many fixed steps as ude's adaptive solve accepts.

Per-step mode: one jitted call per optimiser step (K calls chained). Fused mode: ``FUSED`` steps in
one ``lax.scan`` (what ``ude.train.fit`` runs). All candidates are timed round-robin in the same
process, so the ratios share the machine's load. Also reports load-independent kernel-launch counts
of each compiled program (see ``hlo.py``).
"""

from __future__ import annotations

import diffrax
import handwritten as hw
import udestep
from common import ATOL, FUSED, RTOL, compare, problem, ratio
from hlo import launch_counts

NAME = "step"
FULL_ONLY = False


def _loop(program, carry, k):
    def run():
        c = carry
        for _ in range(k):
            c = program(c)[0]
        return c

    return run


def run(mode: str) -> dict:
    from ude.solve import SolverOptions, solve

    repeats, k = (5, 10) if mode == "quick" else (21, 20)
    model, data = problem("float32")
    options = SolverOptions("tsit5", rtol=RTOL, atol=ATOL)
    sol = solve(model, data.ys[0, 0], data.ts, options)
    n_steps, n_rej = int(sol.num_steps), int(sol.num_rejected)

    ref = solve(model, data.ys[0, 0], data.ts, SolverOptions("tsit5-diffrax", rtol=RTOL, atol=ATOL))

    u_c, u_one, u_many = udestep.ude_step(model, data, options, FUSED)
    h_c, h_one, h_many = hw.diffrax_step(model, data, diffrax.RecursiveCheckpointAdjoint(), FUSED)
    s_c, s_one, s_many = hw.same_config_step(model, data, FUSED)
    f_c, _, f_many = hw.floor_step(model, data, n_steps, FUSED)
    cands = {
        "ude_fused": (lambda: u_many(u_c), FUSED),
        "diffrax_fused": (lambda: h_many(h_c), FUSED),
        "same_config_fused": (lambda: s_many(s_c), FUSED),
        "floor_fused": (lambda: f_many(f_c), FUSED),
        "ude_per_step": (_loop(u_one, u_c, k), k),
        "diffrax_per_step": (_loop(h_one, h_c, k), k),
        "same_config_per_step": (_loop(s_one, s_c, k), k),
    }
    res = compare(cands, repeats)
    launches = {
        "ude": launch_counts(u_one.compiled(u_c).as_text()),
        "diffrax": launch_counts(h_one.compiled(h_c).as_text()),
        "same_config": launch_counts(s_one.compiled(s_c).as_text()),
        "floor": launch_counts(hw.floor_step(model, data, n_steps, 1)[1].compiled(f_c).as_text()),
    }
    ratios = {
        "ude/diffrax per-step": ratio(res, "ude_per_step", "diffrax_per_step"),
        "ude/diffrax fused": ratio(res, "ude_fused", "diffrax_fused"),
        "ude/same-config per-step": ratio(res, "ude_per_step", "same_config_per_step"),
        "ude/same-config fused": ratio(res, "ude_fused", "same_config_fused"),
        "ude fused/floor": ratio(res, "ude_fused", "floor_fused"),
        "diffrax fused/floor": ratio(res, "diffrax_fused", "floor_fused"),
        "diffrax per-step/fused": ratio(res, "diffrax_per_step", "diffrax_fused"),
    }
    rows = [
        {
            "candidate": k,
            "wall ms/step": v["wall_ms"],
            "cpu ms/step": v["cpu_ms"],
            "min wall ms/step": v["wall_min_ms"],
        }
        for k, v in res.items()
    ]
    rows += [
        {
            "candidate": f"ratio {k}",
            "wall ms/step": r["paired_wall"],
            "cpu ms/step": r["paired_cpu"],
            "min wall ms/step": None,
        }
        for k, r in ratios.items()
    ]
    rows += [
        {
            "candidate": f"launches/step-loop {k}",
            "wall ms/step": None,
            "cpu ms/step": None,
            "min wall ms/step": None,
            "note": f"{v['launches']} total; loop bodies {v['loop_bodies'][:4]}",
        }
        for k, v in launches.items()
    ]
    targets = {
        "ude/diffrax per-step <= 1.05": ratios["ude/diffrax per-step"]["paired_cpu"] <= 1.05,
        "ude/diffrax fused <= 1.05": ratios["ude/diffrax fused"]["paired_cpu"] <= 1.05,
        "ude/same-config per-step <= 1.05": ratios["ude/same-config per-step"]["paired_cpu"]
        <= 1.05,
        "ude/same-config fused <= 1.05": ratios["ude/same-config fused"]["paired_cpu"] <= 1.05,
        "ude fused/floor <= 2.0": ratios["ude fused/floor"]["paired_cpu"] <= 2.0,
    }
    return {
        "problem": {
            "solver": "tsit5",
            "rtol": RTOL,
            "atol": ATOL,
            "dtype": "float32",
            "adaptive_steps": n_steps,
            "rejected_steps": n_rej,
            "fused": FUSED,
            "diffrax_tsit5_steps": int(ref.num_steps),
            "diffrax_tsit5_rejected": int(ref.num_rejected),
            "per_step_calls_per_repeat": k,
        },
        "timings": res,
        "ratios": ratios,
        "launches": launches,
        "targets_cpu": targets,
        "rows": rows,
        "columns": ["candidate", "wall ms/step", "cpu ms/step", "min wall ms/step", "note"],
    }
