"""The text of config errors: values as a YAML user writes them, "did you mean", key paths, and
pydantic's errors rewritten as ``"key.path: message"`` lines.

Every message of :class:`~ude.errors.ConfigError` is built here or from these helpers, so a
validator only says what is wrong; how it reads is decided in one place.
"""

from __future__ import annotations

import difflib
import re
import typing

from pydantic import BaseModel


class _Problems(ValueError):
    """Raised inside validators: ``items`` are ``(relative key path, message)`` pairs."""

    def __init__(self, items):
        self.items = list(items)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.items))


def _show(v) -> str:
    """``v`` as YAML spells it (``true``, ``null``, quoted strings), for "got ..." in messages."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dict):
        return "a mapping"
    return str(v)


def _suggest(word, choices) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choice(value, choices, what: str) -> str | None:
    """None when ``value`` is one of ``choices``, else a message with a suggestion."""
    if value in choices:
        return None
    return (
        f"unknown {what} {_show(value)}{_suggest(value, choices)}; choose from "
        f"{', '.join(sorted(map(str, choices)))}"
    )


def _join_path(parts) -> str:
    """``["train", "stages", 1, "lr"]`` → ``"train.stages[1].lr"`` (parts may be paths too)."""
    out = ""
    for p in parts:
        if p == "" or p is None:
            continue
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            for piece in re.findall(r"[^.\[\]]+|\[\d+\]", str(p)):
                out += piece if piece.startswith("[") else ("." if out else "") + piece
    return out


def _unwrap(ann):
    """The pydantic model class inside an annotation (Optional, list, dict, Annotated), or None."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        m = _unwrap(arg)
        if m is not None:
            return m
    return None


def _fields_at(root: type[BaseModel], loc) -> list[str]:
    """The keys valid at ``loc`` under the model ``root`` (for "valid keys: ..." hints)."""
    cls = root
    for part in loc:
        if isinstance(part, int):
            continue
        if cls is None or part not in cls.model_fields:
            return []
        cls = _unwrap(cls.model_fields[part].annotation)
    return list(cls.model_fields) if cls is not None else []


_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}

_EXPECTED = {
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "tuple_type": "a list",
    "finite_number": "a finite number",
}


def _pydantic_message(err, root: type[BaseModel]) -> list[tuple[str, str]]:
    """One pydantic error (an item of ``ValidationError.errors()``) of a ``root`` model as
    ``(key path, message)`` pairs; a :class:`_Problems` raised in a validator gives several."""
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    t, ctx, inp = err["type"], err.get("ctx") or {}, err.get("input")
    path = _join_path(loc)
    if t == "value_error" and isinstance(ctx.get("error"), _Problems):
        return [(_join_path([path, p]), m) for p, m in ctx["error"].items]
    if t == "extra_forbidden":
        fields = _fields_at(root, loc[:-1])
        hint = _suggest(loc[-1], fields)
        return [
            (
                path,
                f"unknown key{hint}"
                + ("" if hint or not fields else f"; valid keys: {', '.join(fields)}"),
            )
        ]
    if t == "missing":
        return [(path, "required key is missing")]
    if t in _BOUNDS:
        k, sym = _BOUNDS[t]
        bound = ctx[k]
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        return [(path, f"must be {sym} {bound}, got {_show(inp)}")]
    if t in _EXPECTED:
        return [(path, f"must be {_EXPECTED[t]}, got {_show(inp)}")]
    return [(path, _length_or_other(t, ctx, err, inp))]


def _length_or_other(t: str, ctx: dict, err, inp) -> str:
    """The message of a pydantic error that is not about a key, a bound or a type."""
    if t == "literal_error":
        expected = ctx.get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        return f"must be one of {expected}, got {_show(inp)}{_suggest(inp, choices)}"
    if t == "too_short":
        if str(ctx.get("field_type")) == "Tuple":
            return f"must have {ctx.get('min_length')} values, got {ctx.get('actual_length')}"
        return f"must have at least {ctx.get('min_length')} item(s), got {ctx.get('actual_length')}"
    if t == "too_long":
        return f"must have {ctx.get('max_length')} values at most, got {ctx.get('actual_length')}"
    if t == "string_too_short":
        return "must not be empty"
    if t == "value_error":
        return str(ctx.get("error"))
    return f"{err['msg']}, got {_show(inp)}"


def _format(items) -> list[str]:
    """``(path, message)`` pairs as ``"path: message"`` lines, duplicates dropped, order kept."""
    seen, out = set(), []
    for path, msg in items:
        line = f"{path}: {msg}" if path else msg
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out
