"""Experiments of a config: the inputs its equations read, and simulated ``data.experiments``
(each from its own initial state, driven by its own inputs, with its own noise draw)."""

from __future__ import annotations

import re

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import sympy

from .. import data as data_mod
from ..config import ExperimentConfig

__all__ = ["simulate_experiments", "used_inputs"]


def used_inputs(cfg: ExperimentConfig, equations) -> list[str]:
    """The experiments' inputs that ``equations`` (a config block) read."""
    text = repr(equations)
    return [u for u in cfg.input_names if sympy.Symbol(u) in _symbols(text)]


def _symbols(text: str) -> set:
    return {sympy.Symbol(w) for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)}


def _experiment_inputs(cfg: ExperimentConfig, e) -> data_mod.ExperimentInputs | None:
    """One simulated experiment's inputs: each signal's expression of t sampled at
    ``input_samples`` times over its span, interpolated as ``data.interpolation`` says."""
    from ..equations.lower import lower
    from ..equations.parse import parse_expression

    signal = None
    if cfg.data.inputs:
        t0, t1 = e.t_span
        ts = np.linspace(t0, t1, e.input_samples)
        cols = []
        for u in cfg.data.inputs:
            expr = parse_expression(e.inputs[u], (), path=f"data.experiments.{e.name}.inputs.{u}")
            f = lower((expr,), ("t",))
            cols.append(np.broadcast_to(np.asarray(f(jnp.asarray(ts))[0], float), ts.shape))
        signal = data_mod.InputSignal(
            ts, np.stack(cols, axis=1), tuple(cfg.data.inputs), cfg.data.interpolation
        )
    consts = {c: float(e.constants[c]) for c in cfg.data.constants}
    if signal is None and not consts:
        return None
    return data_mod.ExperimentInputs(signal, consts or None)


def simulate_experiments(cfg: ExperimentConfig, truth, noise) -> data_mod.Dataset:
    """``data.experiments``, each simulated from its own y0 with its own inputs and noise draw
    (key ``fold_in(key(data.seed), i)``), joined into one dataset.

    The truth is solved on save times padded to one length (times after an experiment's end,
    cut off again) and signals padded to one number of samples, so every experiment runs through
    one compiled solve; noise and masks are drawn on each experiment's own times."""
    exps = cfg.data.experiments
    times = [np.asarray(e.times(), dtype=np.float64) for e in exps]
    n = max(t.size for t in times)
    inputs = [_experiment_inputs(cfg, e) for e in exps]
    if inputs[0] is not None and inputs[0].signal is not None:
        k = max(x.signal.ts.shape[0] for x in inputs)
        inputs = [
            eqx.tree_at(lambda q: q.signal, x, data_mod.pad_signal(x.signal, k)) for x in inputs
        ]
    parts = []
    for i, (e, ts, args) in enumerate(zip(exps, times, inputs, strict=True)):
        step = float(np.min(np.diff(ts)))
        padded = np.concatenate([ts, ts[-1] + step * np.arange(1, n - ts.size + 1)])
        clean = data_mod.simulate(
            truth,
            np.asarray(e.y0, dtype=np.float64),
            padded,
            args=args,
            rtol=cfg.truth.tolerance,
            atol=cfg.truth.tolerance,
        )
        y_true = np.asarray(clean.y_true)[:, : ts.size]
        key = jr.fold_in(jr.key(cfg.data.seed), i)
        noisy = np.asarray(noise.apply(jnp.asarray(y_true), key))
        names = clean.state_names
        mask = data_mod.observation_mask(ts, names, cfg.data.observe, 1)
        prov = {
            **clean.provenance,
            "experiment": e.name,
            "y0": list(e.y0),
            "noise": noise.to_dict(),
            "seed": [cfg.data.seed, i],
            "observe": cfg.data.observe,
        }
        parts.append(
            data_mod.Dataset(
                ts,
                noisy,
                mask,
                state_names=names,
                y_true=y_true,
                provenance=prov,
                inputs=args,
                experiment_names=[e.name],
            )
        )
    return data_mod.concat(parts)
