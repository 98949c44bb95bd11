"""Building blocks of the config schema: strict number and name types, the section base class,
options that belong to one ``kind`` only, and the plain-data view of a config.

Strict types, so YAML's ``"1"`` is not silently a number and ``true`` not an integer; sections
forbid unknown keys, so a typo is an error rather than an ignored option.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from .messages import _Problems

Num = Annotated[float, Field(strict=True, allow_inf_nan=False)]
PosFloat = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
PosInt = Annotated[int, Field(strict=True, ge=1)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
Bool = Annotated[bool, Field(strict=True)]
Name = Annotated[str, Field(strict=True, min_length=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _kind_fields(
    obj,
    kind: str,
    owned: dict[str, tuple[str, ...]],
    defaults: dict[str, dict],
    label: dict[str, str],
):
    """Check that fields belonging to other kinds are unset, then fill this kind's defaults."""
    problems = []
    mine = owned.get(kind, ())
    for other, fields in owned.items():
        if other == kind:
            continue
        for f in fields:
            if f in mine:
                continue
            if getattr(obj, f) is not None:
                problems.append(
                    (
                        f,
                        f"not used by {label.get(kind, kind)} (only by "
                        f"{label.get(other, other)}); remove it",
                    )
                )
    if problems:
        raise _Problems(problems)
    for f, v in defaults.get(kind, {}).items():
        if getattr(obj, f) is None:
            setattr(obj, f, v)
    return obj


def _plain(x):
    """JSON-like data of a config model; fields that are None by default and None now are left
    out (re-validating gives them back), so kind-specific options of other kinds do not clutter."""
    if isinstance(x, BaseModel):
        out = {}
        for name, field in type(x).model_fields.items():
            v = getattr(x, name)
            if v is None and field.default is None:
                continue
            out[name] = _plain(v)
        return out
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
