"""The paper's fitting scenarios from a short Python script, timed end to end (compile included).

    python benchmarks/fit_scenarios.py            # all three, writes
                                                  # benchmarks/results/fit_scenarios.json
    python benchmarks/fit_scenarios.py scenario1  # just one

A scenario is one or more phases (strategy + optimiser stages), each starting from the model the
previous one produced. For each scenario: ``final_loss``, the last phase's sum-of-squares loss of
the fitted UDE over the whole window; each phase's own training objective (for multiple shooting:
the segment fits + continuity + penalty); the noise floor (the SSE of the noise itself, i.e. the
truth against the noisy data on the observed values); the loss the true system scores under the
same strategy; and the wall time including compilation.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

import ude  # noqa: E402

TRUTH = ude.LotkaVolterra(1.3, 0.9, 1.8, 0.8)
U0 = jnp.array([0.44249296, 4.6280594])


def _noise_sse(data):
    m = np.asarray(data.mask)
    return float(np.sum(np.where(m, (np.asarray(data.ys) - np.asarray(data.y_true)) ** 2, 0.0)))


def _net(key, width=5, depth=3):
    return ude.MLP(2, 2, width=width, depth=depth, activation="rbf", key=jr.key(key))


def scenario1():
    """5 % noise, t ∈ [0, 3] every 0.1, 2→5→5→5→2 rbf, Adam(0.1)×200 then L-BFGS, SSE."""
    data = ude.simulate(
        TRUTH, U0, jnp.linspace(0.0, 3.0, 31), noise=ude.RelativeMeanNoise(0.05), key=1
    )
    model = ude.UDE(TRUTH.keep("growth", "death"), _net(0))
    strategy = ude.SingleShooting(options=ude.SolverOptions("tsit5", rtol=1e-6, atol=1e-6))
    stages = [ude.Adam(lr=0.1, steps=200), ude.LBFGS(steps=1000, gtol=1e-6)]
    return data, model, [(strategy, stages)]


def tutorial():
    """The later tutorial's setting: 0.5 % noise, t ∈ [0, 5] every 0.25 (21 points).

    Single shooting from an untrained network over [0, 5] gets stuck (final SSE ≈ 128), so the
    network is first fitted without any solve to kernel-smoothed derivatives (``Collocation``,
    2000 Adam steps), then refined through the solver with the initial state learned too."""
    data = ude.simulate(
        TRUTH, U0, jnp.linspace(0.0, 5.0, 21), noise=ude.RelativeMeanNoise(0.005), key=1
    )
    model = ude.UDE(TRUTH.keep("growth", "death"), _net(0))
    strategy = ude.SingleShooting(
        options=ude.SolverOptions("tsit5", rtol=1e-6, atol=1e-6), learn_y0=True
    )
    stages = [ude.Adam(lr=0.001, steps=200), ude.LBFGS(steps=4000, gtol=1e-7)]
    return data, model, [(ude.Collocation(), [ude.Adam(lr=0.05, steps=2000)]), (strategy, stages)]


def scenario2():
    """Partial observation: x at 61 points on [0, 6], y at 6 times, 1 % noise, γ learned,
    multiple shooting over 5 segments (the paper's 1e-3 weight penalty), then a single-shooting
    L-BFGS polish over the whole window with the unobserved initial state learned."""
    ts = jnp.linspace(0.0, 6.0, 61)
    observe = {"y": [0.0, 1.2, 2.4, 3.6, 4.8, 6.0]}
    data = ude.simulate(TRUTH, U0, ts, noise=ude.RelativeMeanNoise(0.01), key=1, observe=observe)
    known = (
        TRUTH.keep("growth", "death").with_params(gamma=1.0).set_trainable("gamma", positive=True)
    )
    model = ude.UDE(known, _net(0))
    strategy = ude.MultipleShooting(
        options=ude.SolverOptions("tsit5", rtol=1e-6, atol=1e-6),
        segments=5,
        continuity=1.0,
        l2=1e-3,
    )
    stages = [ude.Adam(lr=0.05, steps=2000), ude.LBFGS(steps=1000, gtol=1e-6)]
    polish = ude.SingleShooting(
        options=ude.SolverOptions("tsit5", rtol=1e-6, atol=1e-6), learn_y0=True
    )
    return data, model, [(strategy, stages), (polish, [ude.LBFGS(steps=1000, gtol=1e-7)])]


SCENARIOS = {"scenario1": scenario1, "tutorial": tutorial, "scenario2": scenario2}


def run(name):
    t0 = time.perf_counter()
    data, model, phases = SCENARIOS[name]()
    out = {"phases": []}
    for strategy, stages in phases:  # each phase starts from the previous phase's model
        res = ude.fit(model, data, strategy, stages, key=jr.key(0), verbose=False)
        model = res.model
        objective = eqx.filter_jit(lambda m, e, d, s=strategy: s.loss(m, e, d)[0])
        out["phases"].append(
            {
                "strategy": type(strategy).__name__,
                "objective": float(objective(res.model, res.extra, data)),
                "steps": int(len(res.history["loss"])),
                "rejected": res.rejected,
                "stopped": res.stopped,
            }
        )
    out.update(
        {
            "final_loss": res.final_loss,
            "noise_floor_sse": _noise_sse(data),
            "truth_loss_same_strategy": ude.loss_value(ude.UDE(TRUTH), data, strategy),
            "wall_seconds": time.perf_counter() - t0,
        }
    )
    if name == "scenario2":
        out["gamma"] = float(model.known.p("gamma"))
    return out


def main(argv=None):
    names = (argv if argv else sys.argv[1:]) or list(SCENARIOS)
    results = {
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "jax": jax.__version__,
            "devices": str(jax.devices()),
        }
    }
    for n in names:
        results[n] = run(n)
        print(n, json.dumps(results[n]), flush=True)
    path = Path(__file__).parent / "results" / "fit_scenarios.json"
    path.parent.mkdir(exist_ok=True)
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(results)
    path.write_text(json.dumps(old, indent=2))
    return results


if __name__ == "__main__":
    main()
