"""Experiments of a config: the inputs its equations read, and simulated ``data.experiments``
(each from its own initial state, driven by its own inputs, with its own noise draw)."""

from __future__ import annotations

import re

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
    (key ``fold_in(key(data.seed), i)``), joined into one dataset."""
    parts = []
    for i, e in enumerate(cfg.data.experiments):
        inputs = _experiment_inputs(cfg, e)
        d = data_mod.simulate(
            truth,
            np.asarray(e.y0, dtype=np.float64),
            np.asarray(e.times(), dtype=np.float64),
            noise=noise,
            key=jr.fold_in(jr.key(cfg.data.seed), i),
            observe=cfg.data.observe,
            args=inputs,
            rtol=cfg.truth.tolerance,
            atol=cfg.truth.tolerance,
        )
        parts.append(
            data_mod.Dataset(
                d.ts,
                d.ys,
                d.mask,
                state_names=d.state_names,
                y_true=d.y_true,
                provenance={**d.provenance, "experiment": e.name, "y0": list(e.y0)},
                inputs=inputs,
                experiment_names=[e.name],
            )
        )
    return data_mod.concat(parts)
