"""jaxtyping aliases shared across the package."""

from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

Scalar = Float[Array, ""]
ScalarLike = Float[ArrayLike, ""]
Times = Float[Array, " times"]
State = Float[Array, " state"]
States = Float[Array, "times state"]
BatchStates = Float[Array, "batch times state"]
Mask = Bool[Array, "times state"]

__all__ = [
    "Array",
    "ArrayLike",
    "Bool",
    "Float",
    "Int",
    "PyTree",
    "Scalar",
    "ScalarLike",
    "Times",
    "State",
    "States",
    "BatchStates",
    "Mask",
    "is_key_array",
]


def is_key_array(x) -> bool:
    """Whether ``x`` is a typed ``jax.random`` key array (``jr.key``, not a raw ``uint32`` pair)."""
    import jax
    import jax.numpy as jnp

    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
