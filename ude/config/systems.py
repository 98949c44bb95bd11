"""The system a config describes: a shipped one by name, or equations as text (no JAX).

A truth is ``system`` + ``parameters`` or ``equations`` (+ ``parameters``); a model's known part is
``system`` + ``known`` (term names) or ``known`` as equations ``{state: expression}`` with
``parameters``. Either way the checks see a :class:`~ude.registry.SystemSpec`; for equations it is
parsed here with SymPy (:mod:`ude.equations.parse`), cached by the text.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence

from ..equations.parse import EquationError, ParsedEquations, parse_equations
from ..registry import SYSTEMS, SystemSpec

__all__ = [
    "is_equations",
    "parse_block",
    "truth_states",
    "truth_spec",
    "model_states",
    "model_spec",
    "equations_from_terms",
]

Items = list[tuple[str, str]]


def is_equations(known) -> bool:
    """Whether ``model.known`` is written as equations (a mapping) rather than term names."""
    return isinstance(known, Mapping)


@functools.lru_cache(maxsize=256)
def _parse(
    text: str, states: tuple[str, ...] | None, parameters: tuple[str, ...], inputs: tuple[str, ...]
):
    return parse_equations(
        json.loads(text), states=states, parameters=parameters, check_unused=False, inputs=inputs
    )


def parse_block(
    equations: Mapping,
    *,
    states: Sequence[str] | None,
    parameters: Sequence[str],
    where: str,
    inputs: Sequence[str] = (),
) -> tuple[ParsedEquations | None, Items]:
    """Parse an equations block (which may read the experiments' ``inputs``); on failure
    ``(None, [(key path, message)])`` with the path under ``where`` (e.g. ``model.known.x``)."""
    try:
        text = json.dumps(equations)
        parsed = _parse(
            text, None if states is None else tuple(states), tuple(parameters), tuple(inputs)
        )
    except EquationError as e:
        return None, [(f"{where}.{e.path}" if e.path else where, e.problem)]
    except (TypeError, ValueError) as e:  # not JSON-able: not text and numbers
        return None, [(where, f"must map each state to an expression, got {e}")]
    return parsed, []


def unused_parameters(parsed: ParsedEquations, names: Sequence[str], where: str) -> Items:
    """``names`` that appear in no equation of ``parsed``."""
    used = parsed.used_parameters()
    return [(f"{where}.{p}", "used in no equation; remove it") for p in names if p not in used]


# ---- truth --------------------------------------------------------------------------------------
def truth_states(truth) -> tuple[str, ...] | None:
    """The truth's states (a system's, or the keys of its equations)."""
    if truth is None:
        return None
    if truth.equations is not None:
        return tuple(truth.equations)
    return SYSTEMS[truth.system].state_names


def truth_spec(truth) -> SystemSpec | None:
    """The truth as a spec (None when its equations do not parse; its own checks report it)."""
    if truth is None:
        return None
    if truth.equations is None:
        return SYSTEMS[truth.system]
    parsed, problems = parse_block(
        truth.equations,
        states=None,
        parameters=list(truth.parameters),
        where="equations",
        inputs=truth.inputs,
    )
    return None if problems else parsed.spec("truth")


# ---- model --------------------------------------------------------------------------------------
def model_states(model, truth) -> tuple[str, ...] | None:
    """The model's states: ``model.states``, else its system's, else the keys of its equations,
    else the truth's."""
    if model.states is not None:
        return tuple(model.states)
    if model.system is not None:
        return SYSTEMS[model.system].state_names
    if is_equations(model.known):
        if truth is not None:
            return truth_states(truth)
        return tuple(model.known)
    return truth_states(truth)


def model_parameter_names(model, truth) -> list[str]:
    """The names a model's equations may use: its own parameters, then the truth's."""
    names = list(model.parameters)
    if truth is not None:
        names += [p for p in truth.parameters if p not in names]
    return names


def model_spec(model, truth, inputs: Sequence[str] = ()) -> tuple[SystemSpec | None, Items]:
    """The model's system as a spec and the problems of its equations (the spec is None when they
    do not parse); the equations may read the experiments' ``inputs``."""
    if not is_equations(model.known):
        system = model.system
        if system is None and truth is not None and truth.system is not None:
            system = truth.system
        if system is not None:
            return SYSTEMS[system], []
        return truth_spec(truth), []
    parsed, problems = parse_block(
        model.known,
        states=model_states(model, truth),
        parameters=model_parameter_names(model, truth),
        where="model.known",
        inputs=inputs,
    )
    if problems:
        return None, problems
    problems = unused_parameters(parsed, list(model.parameters), "model.parameters")
    return parsed.spec("model"), problems


def equations_from_terms(spec: SystemSpec, terms: Sequence[str]) -> dict[str, dict[str, str] | str]:
    """The nested equations ``{state: {term: expression}}`` of ``terms`` of an equations spec
    (``model.known`` as a list of the truth's term names, resolved to equations); a state with
    none gets ``"0"``."""
    out: dict[str, dict[str, str]] = {s: {} for s in spec.state_names}
    for t in terms:
        state, expr = spec.term_formulas[t].split(":", 1)
        out[state.strip()][t] = expr.strip()
    return {s: (v if v else "0") for s, v in out.items()}
