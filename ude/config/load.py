"""From a raw mapping or a file to a resolved :class:`~.schema.ExperimentConfig`.

:func:`validate_config` collects every problem — pydantic's (rewritten by :mod:`.messages`) and
the cross-section checks' (:mod:`.checks`) — into one :class:`~ude.errors.ConfigError`, then fills
the defaults that depend on other sections. :func:`load_config` reads a YAML file, applies
``--set`` overrides and validates.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from ..registry import SYSTEMS
from .checks import _cross_check, _known_terms
from .messages import _format, _pydantic_message, _show, _unwrap
from .overrides import apply_overrides
from .schema import SECTIONS, ExperimentConfig
from .systems import (
    equations_from_terms,
    is_equations,
    model_states,
    parse_block,
    truth_spec,
)
from .yaml_io import describe, read_yaml

__all__ = ["validate_config", "load_config"]


def _section_models() -> dict[str, type[BaseModel]]:
    """Each section's model class by section name."""
    return {name: _unwrap(ExperimentConfig.model_fields[name].annotation) for name in SECTIONS}


def _resolve_model(cfg: ExperimentConfig) -> dict:
    """The model section resolved: the system or the equations (the truth's terms by name become
    equations), states, parameter values (numbers), the trainable list and positivity."""
    model, truth = cfg.model, cfg.truth
    m = model.model_dump(mode="python")
    values = dict(truth.parameters) if truth is not None else {}
    values.update(model.values())
    trainable = model.trainable_names()
    m["trainable"] = trainable
    positive = [p for p in trainable if model.is_positive(p)]
    # a plain true/false stays so when it says the same as the list
    if isinstance(model.positive, bool) and positive == (trainable if model.positive else []):
        m["positive"] = model.positive
    else:
        m["positive"] = positive
    if not is_equations(model.known) and model.system is None and truth.system is not None:
        m["system"] = truth.system
    if m["system"] is not None:  # a shipped system
        spec = SYSTEMS[m["system"]]
        m["known"] = _known_terms(model.known, spec)
        for p in spec.param_names:  # unused by the known terms: any value will do
            values.setdefault(p, 0.0)
        m["parameters"] = {p: float(values[p]) for p in spec.param_names}
        return m
    if not is_equations(model.known):  # the truth's equations, some of their terms by name
        spec = truth_spec(truth)
        m["known"] = equations_from_terms(spec, _known_terms(model.known, spec))
    states = model_states(model, truth)
    m["states"] = list(states)
    parsed, _ = parse_block(
        m["known"],
        states=states,
        parameters=list(values),
        where="model.known",
        inputs=cfg.input_names,
    )
    used = parsed.used_parameters()
    m["parameters"] = {p: float(values[p]) for p in values if p in used or p in model.parameters}
    return m


def _resolve(cfg: ExperimentConfig) -> ExperimentConfig:
    """Fill the defaults that depend on other sections."""
    d = cfg.model_dump(mode="python")
    d["model"] = _resolve_model(cfg)
    if cfg.data.file is None and cfg.data.experiments is None:
        if d["data"]["train_end"] is None:
            d["data"]["train_end"] = float(cfg.data.t_span[1])
        if d["data"]["held_out"] is None and d["data"]["train_end"] < cfg.data.t_span[1]:
            d["data"]["held_out"] = (d["data"]["train_end"], float(cfg.data.t_span[1]))
        if d["evaluate"]["t_end"] is None:
            d["evaluate"]["t_end"] = float(cfg.data.t_span[1])
    return ExperimentConfig.model_validate(d)


def _sections_alone(raw: dict) -> tuple[dict[str, Any], set[str]]:
    """Each section of ``raw`` validated alone (None where it fails), and the names of the
    invalid ones: when the whole config fails, cross-section checks still run where they can."""
    sections: dict[str, Any] = {}
    invalid: set[str] = set()
    for name, model_cls in _section_models().items():
        field = ExperimentConfig.model_fields[name]
        if name in raw:
            value = raw[name]
        elif field.is_required():
            invalid.add(name)
            continue
        else:
            value = field.get_default(call_default_factory=True)
        if value is None or isinstance(value, BaseModel):
            sections[name] = value
            continue
        try:
            sections[name] = model_cls.model_validate(value)
        except ValidationError:
            sections[name] = None
            invalid.add(name)
    return sections, invalid


def validate_config(raw: Any, source: str | None = None) -> ExperimentConfig:
    """Validate a config mapping (as read from YAML) completely; raise :class:`ConfigError` with
    every problem at once, or return the resolved :class:`ExperimentConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError([f"the config must be a mapping of sections, got {_show(raw)}"], source)
    _share_inputs(raw)
    items: list[tuple[str, str]] = []
    cfg = None
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        for err in e.errors():
            items.extend(_pydantic_message(err, ExperimentConfig))
    if cfg is not None:
        sections, invalid = {k: getattr(cfg, k) for k in SECTIONS}, set()
    else:
        sections, invalid = _sections_alone(raw)
    items.extend(_missing_y0(raw))
    items.extend(_cross_check(sections, invalid))
    if items:
        raise ConfigError(_format(items), source)
    return _resolve(cfg)


def _missing_y0(raw: dict) -> list[tuple[str, str]]:
    """A truth needs ``y0`` unless the data are experiments (each has its own). Read from the raw
    mapping, so it is reported even when the truth or data section fails its own checks."""
    truth, data = raw.get("truth"), raw.get("data")
    if not isinstance(truth, dict) or truth.get("y0") is not None:
        return []
    if isinstance(data, dict) and data.get("experiments") is not None:
        return []
    why = (
        "the initial state(s) of the simulation; with data.experiments each experiment has its own"
    )
    return [("truth.y0", f"required key is missing ({why})")]


def _share_inputs(raw: dict) -> None:
    """The truth's equations may read the experiments' inputs: ``truth.inputs`` is filled in
    from ``data.inputs`` and ``data.constants`` (when they are lists of names)."""
    truth, data = raw.get("truth"), raw.get("data")
    if not isinstance(truth, dict) or not isinstance(data, dict) or "inputs" in truth:
        return
    names = []
    for key in ("inputs", "constants"):
        v = data.get(key)
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            names += v
    if names:
        truth["inputs"] = names


def _resolve_file_path(raw: dict, base: Path | None) -> None:
    """A relative ``data.file.path`` that is not found from here is looked up next to the config
    file (and one level up), so a config can name its table relative to itself."""
    data = raw.get("data")
    f = data.get("file") if isinstance(data, dict) else None
    p = f.get("path") if isinstance(f, dict) else None
    if not isinstance(p, str) or Path(p).is_absolute() or Path(p).is_file() or base is None:
        return
    for root in (base, base.parent):
        if (root / p).is_file():
            f["path"] = str((root / p).resolve())
            return


def load_config(path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read, override and validate ``path``; ``name`` defaults to the file's stem and
    ``description`` to its first ``#`` comment line. Raises :class:`ConfigError`."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError([f"config file not found: {path}"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"cannot read the config file {path}: {e}"]) from None
    raw = read_yaml(text, source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"the config must be a mapping of sections, got {_show(raw)}"], source)
    raw = apply_overrides(raw, overrides) if overrides else raw
    raw.setdefault("name", path.stem if path.stem != "config" else None)
    if raw.get("name") is None:
        raw.pop("name")
    if "description" not in raw and describe(text):
        raw["description"] = describe(text)
    _resolve_file_path(raw, path.parent.resolve())
    return validate_config(raw, source)
