"""YAML in and out: reading a config's text (``1e-6`` is a float), its description line, and
writing a resolved config back as YAML that re-validates to the same config."""

from __future__ import annotations

import re

import yaml

from ..errors import ConfigError
from .fields import _plain
from .schema import ExperimentConfig

__all__ = ["read_yaml", "describe", "dump_config"]


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-6`` as a string; accept it (and ``1.e-6``, ``.5``) as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+][0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(text: str, source: str | None = None):
    """Parse YAML (floats like ``1e-6`` included); syntax errors become :class:`ConfigError`."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([f"{where}invalid YAML: {problem}"], source) from None


def describe(text: str) -> str | None:
    """The first ``#`` comment line of a config file (what ``ude configs`` lists)."""
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            return s.lstrip("#").strip() or None
        return None
    return None


def dump_config(cfg: ExperimentConfig) -> str:
    """YAML of the resolved config; its description becomes the first line, a ``#`` comment."""
    d = _plain(cfg)
    d.pop("description", None)
    head = f"# {cfg.description}\n" if cfg.description else ""
    return head + yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=100)
