"""Coefficients ↔ equations: printing (``x' = 1.3 x - 0.899 x*y``) and SymPy expressions.

The printed form parses back with :func:`parse_equations`, so a report can be read in again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    implicit_multiplication,
    parse_expr,
    standard_transformations,
)

from .._types import ArrayLike, Float

_TRANSFORMS = standard_transformations + (implicit_multiplication, convert_xor)


def _symbols(state_names: Sequence[str]) -> dict[str, sympy.Symbol]:
    # an explicit namespace, so that states called S, I, E, N, Q … stay plain symbols
    ns = {s: sympy.Symbol(s) for s in state_names}
    ns.update(
        {
            "sin": sympy.sin,
            "cos": sympy.cos,
            "exp": sympy.exp,
            "log": sympy.log,
            "sqrt": sympy.sqrt,
            "tanh": sympy.tanh,
        }
    )
    return ns


def term_to_sympy(name: str, state_names: Sequence[str]) -> sympy.Expr:
    """A library term name (``"x^2*y"``, ``"sin(x)"``, ``"1"``) as a SymPy expression."""
    try:
        return parse_expr(name, local_dict=_symbols(state_names), transformations=_TRANSFORMS)
    except Exception as e:  # sympy raises many kinds
        raise ValueError(f"term_to_sympy: cannot parse term name {name!r}: {e}") from e


def term_variables(name: str, variables: Sequence[str]) -> set[str]:
    """The ``variables`` a term name reads: its SymPy free symbols (the identifiers in it when it
    does not parse, e.g. a :class:`~ude.discovery.CustomLibrary` name)."""
    try:
        used = {str(s) for s in term_to_sympy(name, variables).free_symbols}
    except ValueError:
        used = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", name))
    return used & set(variables)


def _fmt(c: float, precision: int) -> str:
    return np.format_float_positional(
        abs(c), precision=precision, unique=True, fractional=False, trim="-"
    )


def format_rhs(
    coefs: Float[ArrayLike, " terms"] | Sequence[float], names: Sequence[str], precision: int = 4
) -> str:
    """``1.3 x - 0.899 x*y`` from coefficients and term names (zeros are skipped; ``"0"`` if
    none)."""
    parts = []
    for c, n in zip(coefs, names, strict=False):
        c = float(c)
        if c == 0:
            continue
        mag = _fmt(c, precision)
        body = mag if n == "1" else f"{mag} {n}"
        if not parts:
            parts.append(("-" if c < 0 else "") + body)
        else:
            parts.append(("- " if c < 0 else "+ ") + body)
    return " ".join(parts) if parts else "0"


def format_equations(
    coefficients,
    names: Sequence[str],
    state_names: Sequence[str],
    precision: int = 4,
    states: Sequence[str] | None = None,
) -> list[str]:
    """One line ``"x' = …"`` per state. ``coefficients``: (terms, states)."""
    xi = np.asarray(coefficients)
    states = state_names if states is None else states
    return [f"{s}' = {format_rhs(xi[:, state_names.index(s)], names, precision)}" for s in states]


def to_sympy(
    coefficients, names: Sequence[str], state_names: Sequence[str], inputs: Sequence[str] = ()
) -> dict[str, sympy.Expr]:
    """``{state: Σ ξ_k · term_k}`` as SymPy expressions (exact floats of the coefficients); terms
    may read the ``inputs`` too."""
    xi = np.asarray(coefficients)
    terms = [term_to_sympy(n, (*state_names, *inputs)) for n in names]
    out = {}
    for j, s in enumerate(state_names):
        expr = sympy.Integer(0)
        for c, t in zip(xi[:, j], terms, strict=False):
            if c != 0:
                expr = expr + sympy.Float(float(c)) * t
        out[s] = expr
    return out


def parse_equations(
    text: str | Sequence[str], state_names: Sequence[str], inputs: Sequence[str] = ()
) -> dict[str, sympy.Expr]:
    """Read lines ``"x' = 1.3 x - 0.899 x*y"`` (as printed) back into ``{state: expr}``; the
    right-hand sides may read the ``inputs`` too.

    Accepts the Unicode minus ``−`` and ``dx/dt =`` as well as ``x' =``.
    """
    lines = text.splitlines() if isinstance(text, str) else list(text)
    out = {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise ValueError(f"parse_equations: expected 'state' = expression', got {line!r}")
        lhs, rhs = line.split("=", 1)
        lhs = lhs.strip()
        state = lhs[:-1] if lhs.endswith("'") else lhs
        if state.startswith("d") and state.endswith("/dt"):
            state = state[1:-3]
        if state not in state_names:
            raise ValueError(
                f"parse_equations: unknown state {state!r} in {line!r}; states are "
                f"{list(state_names)}"
            )
        rhs = rhs.replace("−", "-").replace("·", "*")
        try:
            out[state] = parse_expr(
                rhs, local_dict=_symbols((*state_names, *inputs)), transformations=_TRANSFORMS
            )
        except Exception as e:
            raise ValueError(f"parse_equations: cannot parse {rhs!r}: {e}") from e
    return out


def coefficients_from_sympy(
    exprs: Mapping[str, sympy.Expr],
    names: Sequence[str],
    state_names: Sequence[str],
    inputs: Sequence[str] = (),
) -> np.ndarray:
    """Inverse of :func:`to_sympy` for expressions linear in the library terms: ``(terms, states)``.

    Raises ``ValueError`` if an expression holds a term the library does not have.
    """
    terms = [term_to_sympy(n, (*state_names, *inputs)) for n in names]
    xi = np.zeros((len(names), len(state_names)))
    for s, expr in exprs.items():
        j = list(state_names).index(s)
        poly = sympy.expand(expr)
        for add in sympy.Add.make_args(poly):
            coeff, rest = add.as_coeff_Mul()
            k = next((i for i, t in enumerate(terms) if sympy.simplify(rest - t) == 0), None)
            if k is None:
                raise ValueError(
                    f"coefficients_from_sympy: term {rest} of {s}' is not in the library"
                )
            xi[k, j] += float(coeff)
    return xi
