"""``compile``: first-call cost of a training stage's chunk program, and recompilation checks.

``first_call_s`` is the first ``FUSED``-step chunk call in a fresh process (tracing, lowering, XLA
compilation and one run; ``second_call_s`` is the run alone); ``lower_s``/``compile_s`` split an
ahead-of-time build of the same program in another fresh process. The recompile checks count the
entries of ``fit``'s jit cache (``_run_chunk``) while the learning rate, the tolerances, the noise
level of the data, and the stage length change, and across a two-stage ``fit``: one entry
throughout means no recompilation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import jax.random as jr
import udestep
from common import ATOL, FUSED, RTOL, block, problem

NAME = "compile"
FULL_ONLY = False


def _first_call():
    from ude.solve import SolverOptions

    model, data = problem("float32")
    c, _, many = udestep.ude_step(model, data, SolverOptions("tsit5", rtol=RTOL, atol=ATOL), FUSED)
    t = time.perf_counter()
    block(many(c))
    first = time.perf_counter() - t
    t = time.perf_counter()
    block(many(c))
    return first, time.perf_counter() - t


def _first_call_in_fresh_process():
    out = subprocess.run(
        [sys.executable, __file__, "--first-call"], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(mode: str) -> dict:
    from ude.solve import SolverOptions
    from ude.train import Adam, SingleShooting, fit
    from ude.train.fit import _run_chunk

    cache = _run_chunk._cached._cache_size
    model, data = problem("float32")
    options = SolverOptions("tsit5", rtol=RTOL, atol=ATOL)

    first, second = _first_call_in_fresh_process()
    c, one, many = udestep.ude_step(model, data, options, FUSED)
    t = time.perf_counter()
    lowered = many.lower(c)
    lower_s = time.perf_counter() - t
    t = time.perf_counter()
    lowered.compile()
    compile_s = time.perf_counter() - t
    block(many(c))

    base = cache()
    checks = {}
    for name, (m, d, o, lr) in {
        "learning rate 1e-3 -> 3e-4": (model, data, options, 3e-4),
        "rtol/atol 1e-6 -> 1e-5": (model, data, SolverOptions("tsit5", rtol=1e-5, atol=1e-5), 1e-3),
        "noise 0 -> 5 %": (model, problem("float32", noise=0.05)[1], options, 1e-3),
        "new network weights": (problem("float32", seed=3)[0], data, options, 1e-3),
    }.items():
        before = cache()
        cc, _, mm = udestep.ude_step(m, d, o, FUSED, lr=lr)
        block(mm(cc))
        checks[name] = cache() - before

    before = cache()
    t = time.perf_counter()
    fit(
        model,
        data,
        SingleShooting(options=options),
        [Adam(lr=1e-3, steps=FUSED), Adam(lr=3e-4, steps=2 * FUSED, schedule="constant")],
        key=jr.key(0),
        chunk=FUSED,
        verbose=False,
    )
    fit_s = time.perf_counter() - t
    checks["fit: two Adam stages (different lr and length)"] = cache() - before

    rows = [
        {"what": "first call (trace + compile + run), s", "value": first},
        {"what": "second call, s", "value": second},
        {"what": "AOT trace+lower, s", "value": lower_s},
        {"what": "AOT XLA compile, s", "value": compile_s},
        {"what": f"fit 2 stages x {FUSED}+{2 * FUSED} steps (warm), s", "value": fit_s},
    ]
    rows += [{"what": f"new compiles: {k}", "value": v} for k, v in checks.items()]
    return {
        "first_call_s": first,
        "second_call_s": second,
        "lower_s": lower_s,
        "compile_s": compile_s,
        "fit_two_stages_s": fit_s,
        "recompiles": checks,
        "jit_cache_entries": base,
        "targets_cpu": {
            "first-call compile <= 3 s": first - second <= 3.0,
            "no recompiles": not any(checks.values()),
        },
        "rows": rows,
        "columns": ["what", "value"],
    }


if __name__ == "__main__" and sys.argv[1:] == ["--first-call"]:
    print(json.dumps(_first_call()))
