"""``--set KEY=VALUE`` overrides: key paths such as ``train.stages[0].steps``, YAML values, and
applying them to a raw config before validation.

A missing mapping on the way is created, from the schema's default where there is one (so
``train.stages[0].lr=0.01`` edits the default stages); a list index must exist.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import yaml

from ..errors import ConfigError
from .fields import _plain
from .messages import _join_path, _show, _unwrap
from .schema import ExperimentConfig
from .yaml_io import _Loader

__all__ = ["parse_override", "apply_overrides"]

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


def _split_key(key: str) -> list[str | int]:
    """``"a.b[0].c"`` → ``["a", "b", 0, "c"]``; ValueError when it is no key path."""
    parts: list[str | int] = []
    pos = 0
    key = key.strip()
    while pos < len(key):
        if key[pos] == "." and parts and pos + 1 < len(key):
            pos += 1
        m = _PATH_PART.match(key, pos)
        if m is None:
            raise ValueError(f"cannot parse the key path {key!r} (write it as a.b[0].c)")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts or not isinstance(parts[0], str):
        raise ValueError(f"cannot parse the key path {key!r} (write it as a.b[0].c)")
    return parts


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``"train.stages[0].steps=5"`` → ``(["train", "stages", 0, "steps"], 5)``; the value is a
    YAML scalar (or flow list/mapping)."""
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. train.stages[0].steps=5")
    key, value = text.split("=", 1)
    try:
        path = _split_key(key)
    except ValueError as e:
        raise ValueError(f"--set {text!r}: {e}") from None
    try:
        parsed = yaml.load(value, Loader=_Loader) if value.strip() else None
    except yaml.YAMLError as e:
        raise ValueError(
            f"--set {text!r}: the value is not valid YAML ({getattr(e, 'problem', e)})"
        ) from None
    return path, parsed


def _default_at(parts) -> Any:
    """The schema default at a key path (plain data), e.g. ``["train", "stages"]`` → the default
    stage list; None when there is none."""
    cls, value, have = ExperimentConfig, None, False
    for part in parts:
        if isinstance(part, int):
            if not (have and isinstance(value, list) and -len(value) <= part < len(value)):
                return None
            value = value[part]
            continue
        if have and isinstance(value, dict):
            value = value.get(part)
            cls = (
                _unwrap(cls.model_fields[part].annotation)
                if cls and part in cls.model_fields
                else None
            )
            continue
        if cls is None or part not in cls.model_fields:
            return None
        field = cls.model_fields[part]
        if field.is_required():
            return None
        value, have = _plain(field.get_default(call_default_factory=True)), True
        cls = _unwrap(field.annotation)
    return value


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """A copy of ``raw`` with each ``KEY=VALUE`` applied (missing mappings are created; list
    indices must exist). Raises :class:`ConfigError` listing the overrides that cannot apply."""
    raw = copy.deepcopy(raw)
    problems = []
    for text in overrides:
        try:
            path, value = parse_override(text)
        except ValueError as e:
            problems.append(str(e))
            continue
        node, problem = _parent(raw, path, text)
        if problem is None:
            problem = _assign(node, path, value, text)
        if problem is not None:
            problems.append(problem)
    if problems:
        raise ConfigError(problems)
    return raw


def _parent(raw: dict, path: list, text: str):
    """``(node, None)`` with ``node`` the container of ``path[-1]`` in ``raw`` (missing mappings
    and lists created on the way), or ``(None, message)`` when the path cannot be followed."""
    node = raw
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        where = _join_path(path[: i + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                n = len(node) if isinstance(node, list) else 0
                return None, (
                    f"--set {text!r}: {_join_path(path[:i])} has {n} entries, no index {part}"
                )
            child = node[part]
            if child is None:
                child = node[part] = [] if isinstance(nxt, int) else {}
        else:
            if not isinstance(node, dict):
                return None, (
                    f"--set {text!r}: {_join_path(path[:i]) or 'the config'} is not a mapping"
                )
            child = node.get(part)
            if child is None:
                default = _default_at(path[: i + 1]) if part not in node else None
                want = list if isinstance(nxt, int) else dict
                child = node[part] = default if isinstance(default, want) else want()
        if isinstance(nxt, int) and not isinstance(child, list):
            return None, f"--set {text!r}: {where} is not a list"
        if isinstance(nxt, str) and not isinstance(child, dict):
            return None, f"--set {text!r}: {where} is {_show(child)}, not a mapping"
        node = child
    return node, None


def _assign(node, path: list, value, text: str) -> str | None:
    """Set ``node[path[-1]] = value``; a message when that list index does not exist."""
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not -len(node) <= last < len(node):
            n = len(node) if isinstance(node, list) else 0
            return f"--set {text!r}: {_join_path(path[:-1])} has {n} entries, no index {last}"
    node[last] = value
    return None
