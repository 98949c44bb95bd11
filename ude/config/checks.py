"""Checks that need several sections of a config, one small function per concern.

Each section validates itself in :mod:`.schema`; what remains is consistency between them: the
data source and the truth, the model's system, terms and parameters against the registry, the
network's states, the data's windows, the training strategy and stages against the training
window, and discovery against the network. Every check returns ``(key path, message)`` pairs;
:func:`_cross_check` runs them in a fixed order, skipping those whose sections are invalid.
"""

from __future__ import annotations

import re

from ..registry import SystemSpec
from .checks_data import (
    check_experiments as _check_experiments,
    check_file_states as _check_file_states,
    check_observe as _check_observe,
    check_windows as _check_windows,
    span as _span,
)
from .messages import _suggest
from .schema import DataConfig, ModelConfig
from .schema_train import TrainConfig
from .systems import is_equations, model_spec, truth_states
from .times import time_grid

Items = list[tuple[str, str]]


def _params_in_terms(spec: SystemSpec, terms) -> set[str]:
    """The parameters that appear in the formulas of ``terms``."""
    text = " ".join(spec.term_formulas.get(t, "").split(":", 1)[-1] for t in terms)
    return {p for p in spec.param_names if re.search(rf"\b{re.escape(p)}\b", text)}


def _known_terms(known, spec: SystemSpec) -> list[str]:
    """``model.known`` (``"all"``, ``"none"`` or a list) as a list of term names."""
    if known == "all":
        return list(spec.term_names)
    if known == "none":
        return []
    return list(known)


def _cross_check(s: dict, invalid: set) -> Items:
    """Checks that need several sections; ``s[name]`` is the validated section or None, and
    ``invalid`` names the sections that failed their own validation (checks needing them are
    skipped)."""
    truth, data, model = s.get("truth"), s.get("data"), s.get("model")
    out = _check_redraw_noise(s.get("parallel"), data) + _check_data_source(truth, data, invalid)
    system, problems = _model_system(model, truth, data, invalid)
    out += problems
    if model is None or (system is None and not _equations_model(model, truth)):
        return out
    if "data" in invalid:  # the model's symbols may be the data's inputs
        return out
    inputs = () if data is None else tuple(data.inputs) + tuple(data.constants)
    spec, problems = model_spec(model, truth, inputs)
    out += problems
    if spec is None:
        return out
    if is_equations(model.known):
        known = list(spec.term_names)
    else:
        known = [t for t in _known_terms(model.known, spec) if t in spec.term_names]
    used = _params_in_terms(spec, known)
    out += _check_states(model, truth, spec)
    out += _check_known(model, spec)
    out += _check_model_parameters(model, truth, data, spec, used)
    out += _check_trainable(model, truth, spec, known, used)
    out += _check_network(model, spec, known, inputs)
    if data is not None:
        out += _check_experiments(truth, data, spec.state_names)
        grid = time_grid(data)
        out += _check_observe(data, grid, spec.state_names) + _check_file_states(data, spec)
        out += _check_windows(data)
        if s.get("train") is not None:
            out += _check_strategy(s["train"], data, grid, spec.state_names)
            out += _check_horizons(s["train"], data)
        out += _check_evaluate(s.get("evaluate"), data)
    out += _check_discovery(s.get("discovery"), model, spec, used, inputs)
    return out


# ---- data source and system --------------------------------------------------------------------
def _check_redraw_noise(par, data: DataConfig | None) -> Items:
    if par is None or not par.redraw_noise or data is None:
        return []
    if data.file is not None:
        return [
            (
                "parallel.redraw_noise",
                "needs simulated data (data.file is a fixed table with its own noise); remove it",
            )
        ]
    if data.noise.kind == "none":
        return [
            (
                "parallel.redraw_noise",
                "data.noise.kind is 'none': there is no noise to "
                "redraw; remove it or set data.noise",
            )
        ]
    return []


def _check_data_source(truth, data: DataConfig | None, invalid: set) -> Items:
    """Simulated data need a truth; a real table excludes one."""
    if data is None or "truth" in invalid:
        return []
    out = []
    if truth is None and data.file is None:
        out.append(("truth", "required unless data.file names a real data table"))
    if truth is not None and data.file is not None:
        out.append(
            ("data.file", "give either truth (simulated data) or data.file (real data), not both")
        )
    return out


def _equations_model(model: ModelConfig, truth) -> bool:
    """Whether the model's known part is equations: written so, or the truth's terms by name."""
    if is_equations(model.known):
        return True
    return model.system is None and truth is not None and truth.equations is not None


def _model_system(
    model: ModelConfig | None, truth, data: DataConfig | None, invalid: set
) -> tuple[str | None, Items]:
    """The model's shipped system (default: the truth's) and the problems in choosing it; None
    when the model is equations, or when the checks that need a system cannot run."""
    system = model.system if model is not None else None
    if model is not None and is_equations(model.known):
        if system is not None:
            return None, [
                (
                    "model.system",
                    "not used when model.known is written as equations; remove it",
                )
            ]
        return None, []
    if model is not None and system is None:
        if truth is not None:
            return truth.system, []
        if "truth" not in invalid and data is not None and data.file is not None:
            return None, [
                (
                    "model.system",
                    "required with data.file (there is no truth system to take it from)",
                )
            ]
    elif (
        system is not None
        and truth is not None
        and truth.system is not None
        and truth.system != system
    ):
        return None, [
            (
                "model.system",
                f"{system!r} differs from truth.system {truth.system!r}; "
                "the known terms must be part of the true system",
            )
        ]
    return system, []


# ---- model ------------------------------------------------------------------------------------
def _check_states(model: ModelConfig, truth, spec: SystemSpec) -> Items:
    """``model.states`` are the system's (a shipped one's, or the truth's, in order)."""
    out = []
    ref = truth_states(truth) if truth is not None else None
    if model.states is not None and model.system is not None:
        if tuple(model.states) != tuple(spec.state_names):
            out.append(
                (
                    "model.states",
                    f"{model.states} differ from the states of {model.system} "
                    f"{list(spec.state_names)}; remove model.states",
                )
            )
    elif ref is not None and tuple(spec.state_names) != tuple(ref):
        out.append(
            (
                "model.states",
                f"the model's states {list(spec.state_names)} differ from the truth's "
                f"{list(ref)} (same names, same order)",
            )
        )
    return out


def _check_known(model: ModelConfig, spec: SystemSpec) -> Items:
    """A list of known terms names terms of the system, each once."""
    if not isinstance(model.known, list):
        return []
    out = []
    for i, t in enumerate(model.known):
        if t not in spec.term_names:
            out.append(
                (
                    f"model.known[{i}]",
                    f"unknown term {t!r} of {spec.name}"
                    f"{_suggest(t, spec.term_names)}"
                    f"; its terms are {', '.join(spec.term_names)}",
                )
            )
        elif model.known.count(t) > 1:
            out.append((f"model.known[{i}]", f"term {t!r} is listed twice"))
    return out


def _check_model_parameters(
    model: ModelConfig, truth, data: DataConfig | None, spec: SystemSpec, used: set[str]
) -> Items:
    """Parameters are the system's; with real data, those of the known terms must be given."""
    out = []
    for p in model.parameters if not is_equations(model.known) else ():
        if p not in spec.param_names:
            out.append(
                (
                    f"model.parameters.{p}",
                    f"unknown parameter of {spec.name}"
                    f"{_suggest(p, spec.param_names)}; its parameters "
                    f"are {', '.join(spec.param_names)}",
                )
            )
    if truth is None and data is not None and data.file is not None:
        missing = sorted(used - set(model.parameters))
        if missing:
            out.append(
                (
                    "model.parameters",
                    f"missing {', '.join(map(repr, missing))} (used by the "
                    "known terms; with real data there is no truth to take "
                    "them from)",
                )
            )
    return out


def _check_trainable(
    model: ModelConfig, truth, spec: SystemSpec, known: list[str], used: set[str]
) -> Items:
    """Trainable parameters appear in a known term and start positive when kept positive."""
    values = dict(truth.parameters) if truth is not None else {}
    values.update(model.values())
    out = []
    for i, p in enumerate(model.trainable_names()):
        where = f"model.trainable[{i}]" if i < len(model.trainable) else f"model.parameters.{p}"
        if p not in spec.param_names:
            out.append(
                (
                    where,
                    f"unknown parameter {p!r} of {spec.name}{_suggest(p, spec.param_names)}",
                )
            )
        elif p not in used:
            out.append(
                (
                    where,
                    f"{p!r} appears in no known term ({', '.join(known) or 'none are known'})",
                )
            )
        elif model.is_positive(p) and p in values and not values[p] > 0:
            out.append(
                (
                    where,
                    f"{p!r} is constrained positive (model.positive) but starts at {values[p]}",
                )
            )
    return out


def _check_network(
    model: ModelConfig, spec: SystemSpec, known: list[str], signals: tuple[str, ...] = ()
) -> Items:
    """Something trains; the network reads states and the experiments' inputs and writes states;
    one scale per input."""
    net, states = model.network, spec.state_names
    if net is None:
        out = []
        if not model.trainable_names():
            out.append(("model", "nothing to train: network is null and trainable is empty"))
        if not known:
            out.append(("model.network", "required when no term is known (known: none)"))
        return out
    out = []
    for f in ("inputs", "outputs"):
        allowed = tuple(states) + (tuple(signals) if f == "inputs" else ())
        for i, n in enumerate(getattr(net, f) or []):
            if n not in allowed:
                what = "states and inputs" if signals and f == "inputs" else "states"
                out.append(
                    (
                        f"model.network.{f}[{i}]",
                        f"unknown {'name' if signals and f == 'inputs' else 'state'} {n!r}"
                        f"{_suggest(n, allowed)}; {what} are {', '.join(allowed)}",
                    )
                )
        names = getattr(net, f) or []
        if len(set(names)) != len(names):
            out.append((f"model.network.{f}", f"lists a name twice: {names}"))
    n_in = len(net.inputs) if net.inputs is not None else len(states)
    if net.input_scale is not None and len(net.input_scale) not in (1, n_in):
        out.append(
            (
                "model.network.input_scale",
                f"give one value or one per input ({n_in}), got {len(net.input_scale)}",
            )
        )
    return out


# ---- train and evaluate -----------------------------------------------------------------------
def _check_strategy(
    train: TrainConfig, data: DataConfig, grid: list | None, states: tuple[str, ...]
) -> Items:
    """One weight per state; segments and windows fit in the training window (of ``grid``)."""
    t_train = _span(data)[2]
    n_train = None
    if grid is not None and t_train is not None:
        n_train = sum(1 for g in grid if g <= t_train + 1e-9 * max(1.0, abs(t_train)))
    st = train.strategy
    out = []
    if st.weights is not None and len(st.weights) != len(states):
        out.append(
            (
                "train.strategy.weights",
                f"give one weight per state ({len(states)}), got {len(st.weights)}",
            )
        )
    if n_train is not None:
        if st.kind == "multiple_shooting" and st.segments > n_train - 1:
            out.append(
                (
                    "train.strategy.segments",
                    f"{st.segments} segments need at least "
                    f"{st.segments + 1} samples; the training "
                    f"window has {n_train}",
                )
            )
        if st.kind == "window_minibatch" and st.window > n_train:
            out.append(
                (
                    "train.strategy.window",
                    f"{st.window} samples exceed the {n_train} of the training window",
                )
            )
    return out


def _check_horizons(train: TrainConfig, data: DataConfig) -> Items:
    """A stage's horizon lies after the data start and within the training window."""
    t0, _, t_train = _span(data)
    out = []
    for i, stage in enumerate(train.stages):
        if stage.horizon is None:
            continue
        if t0 is not None and stage.horizon <= t0:
            out.append(
                (
                    f"train.stages[{i}].horizon",
                    f"must be after the data start {t0}, got {stage.horizon}",
                )
            )
        elif t_train is not None and stage.horizon > t_train:
            out.append(
                (
                    f"train.stages[{i}].horizon",
                    f"must be <= the training end {t_train}, got {stage.horizon}",
                )
            )
    return out


def _check_evaluate(ev, data: DataConfig) -> Items:
    t_train = _span(data)[2]
    if ev is not None and ev.t_end is not None and t_train is not None and ev.t_end < t_train:
        return [("evaluate.t_end", f"must be >= the training end {t_train}, got {ev.t_end}")]
    return []


# ---- discovery --------------------------------------------------------------------------------
def _check_discovery(
    disc, model: ModelConfig, spec: SystemSpec, used: set[str], inputs: tuple[str, ...] = ()
) -> Items:
    """Discovery needs a network; its states are network outputs; refitted parameters are known."""
    if disc is None or not disc.enabled:
        return []
    net, out = model.network, []
    for i, part in enumerate(disc.library):
        for p, m in part.term_problems(tuple(spec.state_names) + inputs, others=disc.library[:i]):
            out.append((f"discovery.library[{i}].{p}", m))
    if net is None:
        out.append(
            (
                "discovery.enabled",
                "discovery regresses the network's output, but "
                "model.network is null; set discovery.enabled: false",
            )
        )
    else:
        outs = net.outputs if net.outputs is not None else list(spec.state_names)
        for i, n in enumerate(disc.states or []):
            if n not in outs:
                out.append(
                    (f"discovery.states[{i}]", f"{n!r} is not a network output ({', '.join(outs)})")
                )
    for i, p in enumerate(disc.refit.train_known):
        if p not in spec.param_names:
            out.append(
                (
                    f"discovery.refit.train_known[{i}]",
                    f"unknown parameter {p!r} of {spec.name}{_suggest(p, spec.param_names)}",
                )
            )
        elif p not in used:
            out.append((f"discovery.refit.train_known[{i}]", f"{p!r} appears in no known term"))
    return out
