"""Experiments scaling: cost per experiment-step of training one model on a dataset of N
experiments, N = 1, 2, 4, ..., 64, each experiment with its own times, initial state and input u(t).

    python benchmarks/experiments_scaling.py            # N = 1, 2, 4, ..., 64 (≈6 min on 2 cores)
    python benchmarks/experiments_scaling.py --quick    # N = 1, 4, 16 (≈1.5 min)
    python benchmarks/experiments_scaling.py --steps 100 --repeats 1   # cheaper

The problem is ``configs/forced_oscillator.yaml``'s driven damped oscillator
``x' = v, v' = -k x - c v - a x³ + u(t)`` (k = 1, c = 0.3, a = 1): known part without the x³
term, plus an MLP 2→16→16→1 (tanh) on (x, v) feeding v'. Experiment i is the same for every N (the
dataset of N experiments is the first N of the 64): experiments 0–4 are the config's e1–e5, the
others draw y0 in [-1.5, 1.5]², a span of 6–10 time units sampled every ≈0.2 (31–51 samples) and a
forcing ``u(t) = b + A sin(ω t + φ)`` (A in [0.3, 1], ω in [0.7, 2.1]) sampled at 101 times over
the span and interpolated linearly; Gaussian noise of sd 0.02, its own draw per experiment. The
experiments are joined by ``ude.data.concat`` (times padded to the longest, a time mask, inputs
stacked), so every training step solves all of them in one vmapped solve.

Training: single shooting (SSE), Adam (lr 1e-2, constant), Tsit5 at rtol = atol = 1e-6, float64;
``ude.train.fit`` with one chunk of ``--steps`` steps (all steps fused in one ``lax.scan``, as the
library runs them). Every N first runs ``fit`` once (it compiles: the data's shapes change with
N); then ``--repeats`` rounds time one more call of every N each (round-robin, so a change of load
from other processes hits all N alike; medians reported). ``compile_s`` is the first call minus
the median timed call. Compiled training programs are counted twice: new entries of the chunk
program's jit cache (``ude.train.step.run_chunk``: one per N expected) and XLA compilations logged
(``jax_log_compiles``) in the first call and in the timed calls (none expected there).

Per-experiment-step cost is ``wall / (N × steps)``; ``vs_1`` is its ratio to N = 1 (below 1: the
vmapped solve amortises the per-step overhead), ``vs_1_paired`` the median of the per-round
ratios. A vmapped ``while_loop`` runs until its slowest experiment is done, so a step costs about
*max* over experiments of the adaptive step count (reported at the initial weights, max and mean,
and at the trained ones); ``us_per_exp_solver_step`` divides the wall time by that too (the mean of
the initial and final max): the cost of one solver step of one experiment, forward and backward.
Results: ``benchmarks/results/experiments_scaling.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
from common import machine, table  # noqa: E402

import ude  # noqa: E402
from ude.compile_cache import CompileLog  # noqa: E402
from ude.data import Dataset, concat  # noqa: E402
from ude.data.inputs import ExperimentInputs, InputSignal  # noqa: E402
from ude.train.step import run_chunk  # noqa: E402

RESULTS = HERE / "results" / "experiments_scaling.json"
TRUTH = ude.Equations(
    {"x": "v", "v": "-k*x - c*v - a*x^3 + u"}, {"k": 1.0, "c": 0.3, "a": 1.0}, inputs=["u"]
)
KNOWN = ude.Equations({"x": "v", "v": "-k*x - c*v + u"}, {"k": 1.0, "c": 0.3}, inputs=["u"])
SIGMA = 0.02
INPUT_SAMPLES = 101
MAX_LEN = 51  # the longest experiment (span 10, every 0.2): truth solves are padded to it
LR = 1e-2
OPTIONS = ude.SolverOptions("tsit5", rtol=1e-6, atol=1e-6, dtype="float64")
# configs/forced_oscillator.yaml's experiments: (y0, span, samples, (offset, amplitude, ω, φ))
CONFIG_EXPERIMENTS = (
    ((1.0, 0.0), 8.0, 41, (0.0, 0.5, 1.2, 0.0)),
    ((-0.5, 1.0), 10.0, 51, (0.0, 1.0, 0.7, 0.0)),
    ((0.0, -1.0), 6.0, 31, (0.0, 0.8, 1.6, np.pi / 2)),  # 0.8 cos(1.6 t)
    ((1.5, 0.5), 9.0, 37, (0.3, 0.6, 2.1, 0.0)),
    ((-1.0, -0.5), 8.0, 41, (0.0, 0.7, 1.0, 0.0)),
)


def spec(i: int, seed: int = 0):
    """Experiment ``i``: ``(y0, span, samples, (offset, amplitude, ω, φ))``, alike for every N."""
    if i < len(CONFIG_EXPERIMENTS):
        return CONFIG_EXPERIMENTS[i]
    rng = np.random.default_rng([seed, i])
    y0 = tuple(rng.uniform(-1.5, 1.5, 2))
    span = float(rng.uniform(6.0, 10.0))
    samples = int(round(5 * span)) + 1
    forcing = (
        float(rng.uniform(-0.3, 0.3)),
        float(rng.uniform(0.3, 1.0)),
        float(rng.uniform(0.7, 2.1)),
        float(rng.uniform(0.0, 2 * np.pi)),
    )
    return y0, span, samples, forcing


@functools.cache
def experiment(i: int, seed: int = 0) -> Dataset:
    """One simulated experiment (its own times, y0, input and noise draw), as
    :func:`ude.pipeline.experiments.simulate_experiments` makes them: the truth is solved on times
    padded to ``MAX_LEN`` (one compiled truth solve for all), then cut to the experiment's own."""
    y0, span, samples, (b, a, w, phi) = spec(i, seed)
    tu = np.linspace(0.0, span, INPUT_SAMPLES)
    inputs = ExperimentInputs(InputSignal(tu, b + a * np.sin(w * tu + phi), ("u",), "linear"))
    ts = np.linspace(0.0, span, samples)
    step = ts[1] - ts[0]
    padded = np.concatenate([ts, ts[-1] + step * np.arange(1, MAX_LEN - samples + 1)])
    clean = ude.simulate(TRUTH, np.asarray(y0), padded, args=inputs, rtol=1e-10, atol=1e-10)
    # noise drawn on the padded times too (one shape: no compile per length), then cut
    noisy = ude.GaussianNoise(SIGMA).apply(clean.y_true, jr.fold_in(jr.key(seed + 1), i))
    y_true, noisy = np.asarray(clean.y_true)[:, :samples], np.asarray(noisy)[:, :samples]
    return Dataset(
        ts,
        noisy,
        state_names=("x", "v"),
        y_true=y_true,
        inputs=inputs,
        experiment_names=[f"e{i + 1}"],
    )


def problem(n: int, seed: int = 0):
    """``(model, data, strategy)``: the hybrid model (fresh network from ``seed``) and the first
    ``n`` experiments joined into one dataset."""
    data = concat([experiment(i, seed) for i in range(n)])
    net = ude.MLP(2, 1, width=16, depth=2, activation="tanh", key=jr.key(seed))
    model = ude.UDE(KNOWN, net, inputs=["x", "v"], outputs=["v"])
    strategy = ude.SingleShooting(options=OPTIONS, reduction="sse")
    return model, data, strategy


@eqx.filter_jit
def _solver_steps(model, extra, data, strategy):
    return strategy.predict(model, extra, data).num_steps


def _counting(fn):
    """``(result, wall_s, cpu_s, compiled names)`` of ``fn()``."""
    with CompileLog() as handler:
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        w, c = time.perf_counter() - w, time.process_time() - c
    return out, w, c, handler.names


class Case:
    """One N: its problem, the fit thunk, and what its first (compiling) call did."""

    def __init__(self, n: int, steps: int):
        t = time.perf_counter()
        self.n, self.steps = n, steps
        self.model, self.data, self.strategy = problem(n)
        self.build_s = time.perf_counter() - t
        self.stage = ude.Adam(lr=LR, steps=steps, schedule="constant")
        self.walls, self.cpus, self.later_compiles = [], [], []
        entries = run_chunk._cached._cache_size()
        self.result, self.first_s, _, self.first_compiles = _counting(self.run)
        self.new_programs = run_chunk._cached._cache_size() - entries

    def run(self):
        return ude.train.fit(
            self.model,
            self.data,
            self.strategy,
            [self.stage],
            key=jr.key(0),
            chunk=self.steps,
            verbose=False,
        )

    def time_once(self):
        self.result, w, c, names = _counting(self.run)
        self.walls.append(w)
        self.cpus.append(c)
        self.later_compiles += names

    def solver_steps(self, model):
        """Adaptive steps (accepted + rejected) of every experiment's solve under ``model``."""
        extra = self.strategy.init(model, self.data)
        return np.asarray(_solver_steps(model, extra, self.data, self.strategy))

    def row(self) -> dict:
        n, steps = self.n, self.steps
        init = self.solver_steps(self.model)
        final = self.solver_steps(self.result.model)
        wall, cpu = statistics.median(self.walls), statistics.median(self.cpus)
        # the vmapped solve loops until its slowest experiment is done: one training step costs
        # about max(solver steps) iterations (forward and backward), over the weights it visits
        iters = 0.5 * (init.max() + final.max())
        return {
            "experiments": n,
            "max_len": self.data.n_times,
            "observed": self.data.n_observed(),
            "solver_steps_max": int(init.max()),
            "solver_steps_mean": float(init.mean()),
            "solver_steps_max_final": int(final.max()),
            "steps": steps,
            "wall_s": wall,
            "wall_min_s": min(self.walls),
            "cpu_s": cpu,
            "ms_per_step": 1e3 * wall / steps,
            "ms_per_exp_step": 1e3 * wall / (n * steps),
            "cpu_ms_per_exp_step": 1e3 * cpu / (n * steps),
            "us_per_exp_solver_step": 1e6 * wall / (n * steps * iters),
            "first_call_s": self.first_s,
            "second_call_s": self.walls[0],
            "compile_s": self.first_s - wall,
            "build_data_s": self.build_s,
            "chunk_programs": self.new_programs,
            "xla_compiles_first_call": len(self.first_compiles),
            "xla_compiles_timed_calls": len(self.later_compiles),
            "compiled_first_call": self.first_compiles,
            "wall_samples_s": [round(x, 5) for x in self.walls],
            "cpu_samples_s": [round(x, 5) for x in self.cpus],
            "solver_steps": init.tolist(),
            "solver_steps_final": final.tolist(),
            "lengths": list(self.data.lengths),
            "rejected": int(sum(self.result.rejected)),
            "initial_loss": float(self.result.history["loss"][0]),
            "final_loss": self.result.final_loss,
        }


def scaling(sizes, steps: int, repeats: int) -> list[dict]:
    """Compile every N (first calls), then time ``repeats`` rounds, each calling every N once
    (round-robin: a change of machine load hits all N alike)."""
    cases = []
    for n in sizes:
        cases.append(Case(n, steps))
        c = cases[-1]
        print(f"N={n}: data {c.build_s:.1f} s, first call {c.first_s:.1f} s", flush=True)
    for k in range(repeats):
        for c in cases:
            c.time_once()
        walls = ", ".join(f"{c.walls[-1]:.3g}" for c in cases)
        print(f"round {k + 1}: {walls} s", flush=True)
    rows = [c.row() for c in cases]
    base, b = rows[0], cases[0]
    for r, c in zip(rows, cases, strict=True):
        r["vs_1"] = r["ms_per_exp_step"] / base["ms_per_exp_step"]
        # the median of the per-round ratios (paired: the same round's load on both)
        r["vs_1_paired"] = statistics.median(
            (w / c.n) / (w1 / b.n) for w, w1 in zip(c.walls, b.walls, strict=True)
        )
        r["step_vs_1"] = r["ms_per_step"] / base["ms_per_step"]
        r["cpu_vs_1"] = r["cpu_ms_per_exp_step"] / base["cpu_ms_per_exp_step"]
        print(json.dumps({k: v for k, v in r.items() if not isinstance(v, list)}), flush=True)
    return rows


COLUMNS = [
    "experiments",
    "max_len",
    "solver_steps_max",
    "solver_steps_mean",
    "wall_s",
    "ms_per_step",
    "ms_per_exp_step",
    "vs_1",
    "vs_1_paired",
    "step_vs_1",
    "us_per_exp_solver_step",
    "compile_s",
    "chunk_programs",
    "xla_compiles_first_call",
    "xla_compiles_timed_calls",
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 1, 4, 16")
    ap.add_argument("--steps", type=int, default=200, help="Adam steps per fit (one chunk)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls after the first")
    args = ap.parse_args(argv)
    sizes = (1, 4, 16) if args.quick else (1, 2, 4, 8, 16, 32, 64)
    t0 = time.perf_counter()
    rows = scaling(sizes, args.steps, args.repeats)
    payload = {
        "machine": machine(),
        "quick": args.quick,
        "problem": (
            "forced oscillator (configs/forced_oscillator.yaml): known -k x - c v + u, MLP "
            "2-16-16-1 tanh on (x, v) -> v'; N experiments of 31-51 samples over 6-10, own y0 and "
            "sinusoidal u(t) (101 samples, linear), noise sd 0.02; single shooting SSE, Adam "
            "lr 1e-2, tsit5 1e-6, float64"
        ),
        "steps": args.steps,
        "repeats": args.repeats,
        "total_s": time.perf_counter() - t0,
        "rows": rows,
        "columns": COLUMNS,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    print()
    print(table(rows, COLUMNS))
    print(f"\nwrote {RESULTS} ({payload['total_s']:.0f} s)")
    return payload


if __name__ == "__main__":
    main()
