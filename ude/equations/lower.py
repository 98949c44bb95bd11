"""SymPy expressions → JAX functions, with SymPy's own ``lambdify(..., modules="jax")``.

The generated functions are cached by the expressions (SymPy expressions hash by structure), so
equal equations share one function.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax.numpy as jnp
import sympy

__all__ = ["lower"]


def lower(exprs: Sequence[sympy.Expr], args: Sequence[str]):
    """``f(*values) -> tuple`` evaluating ``exprs`` at the values of the symbols ``args``.

    Each output is an array of the broadcast shape and dtype of the inputs (a constant expression
    too), so the outputs stack into a state vector."""
    return _lower(tuple(sympy.sympify(e) for e in exprs), tuple(args))


@functools.lru_cache(maxsize=1024)
def _lower(exprs: tuple[sympy.Expr, ...], args: tuple[str, ...]):
    raw = sympy.lambdify([sympy.Symbol(a) for a in args], list(exprs), modules="jax", cse=True)

    def f(*values):
        dtype = jnp.result_type(*values) if values else jnp.result_type(float)
        shape = jnp.broadcast_shapes(*(jnp.shape(v) for v in values)) if values else ()
        return tuple(jnp.broadcast_to(jnp.asarray(o, dtype), shape) for o in raw(*values))

    return f
