"""``adjoint``: gradient strategies for the fused ude step — time and memory.

Reverse mode through ``ude.train.fit``'s chunk program: ``recursive`` (diffrax's
RecursiveCheckpointAdjoint: ude's "auto", a checkpoint per step; diffrax's default count; a small
explicit count), ``direct`` and
``backsolve``. ``forward`` (diffrax ForwardMode) cannot be reverse-differentiated, so it is timed as
``jax.jacfwd`` of the same SingleShooting loss (one gradient per call, all parameters as tangents).
Memory: XLA's temporary-buffer size of the compiled one-step program (``memory_analysis``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import udestep
from common import ATOL, RTOL, compare, problem
from handwritten import Program

NAME = "adjoint"
FULL_ONLY = True
CHUNK = 20


def run(mode: str) -> dict:
    from ude.model import partition
    from ude.solve import SolverOptions
    from ude.train import SingleShooting

    repeats = 5 if mode == "quick" else 9
    model, data = problem("float32")
    cands, memory, compile_s = {}, {}, {}
    import time

    for name, kw in {
        "recursive (auto: one checkpoint per step)": {"adjoint": "recursive"},
        "recursive (diffrax's default checkpoints)": {"adjoint": "recursive", "checkpoints": None},
        "recursive (checkpoints=8)": {"adjoint": "recursive", "checkpoints": 8},
        "direct": {"adjoint": "direct"},
        "backsolve": {"adjoint": "backsolve"},
    }.items():
        options = SolverOptions("tsit5", rtol=RTOL, atol=ATOL, **kw)
        c, one, many = udestep.ude_step(model, data, options, CHUNK)
        t = time.perf_counter()
        compiled = one.compiled(c)
        compile_s[name] = time.perf_counter() - t
        memory[name] = compiled.memory_analysis().temp_size_in_bytes
        cands[name] = ((lambda many=many, c=c: many(c)), CHUNK)

    options = SolverOptions("tsit5", rtol=RTOL, atol=ATOL, adjoint="forward")
    strategy = SingleShooting(options=options)
    params, static = partition(model)

    @eqx.filter_jit
    def fwd_grad(params, data):
        return jax.jacfwd(lambda p: strategy.loss(eqx.combine(p, static), None, data)[0])(params)

    prog = Program(fwd_grad, data)
    t = time.perf_counter()
    compiled = prog.compiled(params)
    compile_s["forward (jacfwd)"] = time.perf_counter() - t
    memory["forward (jacfwd)"] = compiled.memory_analysis().temp_size_in_bytes
    cands["forward (jacfwd)"] = (lambda: prog(params), 1)

    res = compare(cands, repeats)
    base = res["recursive (auto: one checkpoint per step)"]["cpu_ms"]
    rows = [
        {
            "adjoint": k,
            "wall ms/step": v["wall_ms"],
            "cpu ms/step": v["cpu_ms"],
            "vs default": v["cpu_ms"] / base,
            "temp memory KiB": memory[k] / 1024,
            "compile s": compile_s[k],
        }
        for k, v in res.items()
    ]
    return {
        "timings": res,
        "temp_bytes": memory,
        "compile_s": compile_s,
        "chunk": CHUNK,
        "rows": rows,
        "columns": [
            "adjoint",
            "wall ms/step",
            "cpu ms/step",
            "vs default",
            "temp memory KiB",
            "compile s",
        ],
    }
