"""jaxtyping aliases shared across the package."""

from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

Scalar = Float[Array, ""]
ScalarLike = Float[ArrayLike, ""]
Times = Float[Array, " times"]
State = Float[Array, " state"]
States = Float[Array, "times state"]
BatchStates = Float[Array, "batch times state"]
Mask = Bool[Array, "times state"]

__all__ = ["Array", "ArrayLike", "Bool", "Float", "Int", "PyTree", "Scalar", "ScalarLike",
           "Times", "State", "States", "BatchStates", "Mask"]
