"""Hybrid vector fields: known physics + neural corrections, and trainable/frozen filters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, no_type_check

import equinox as eqx
import jax
import jax.numpy as jnp

from ._types import Array, PyTree, State
from .nn import AbstractCorrection
from .physics import AbstractPhysics, Parameter


class AbstractUDE(eqx.Module):
    """A vector field ``(t, y, args) -> dy/dt`` usable directly in ``diffrax.ODETerm``.

    ``compact_stages``: True for vector fields that are large expressions (a discovered model
    evaluates its whole candidate library): ude's Tsit5 then runs its stages in diffrax's loop, one
    copy of the vector field in the compiled program instead of seven (see :mod:`ude.solvers`).
    """

    state_names: eqx.AbstractVar[tuple[str, ...]]
    compact_stages: ClassVar[bool] = False

    def __call__(self, t, y, args=None):
        raise NotImplementedError


def _indices(names: Sequence[str] | None, state_names, what: str) -> tuple[int, ...]:
    if names is None:
        return tuple(range(len(state_names)))
    idx = []
    for n in names:
        if n not in state_names:
            raise ValueError(
                f"UDE: {what} names unknown state {n!r}; states are {list(state_names)}"
            )
        idx.append(state_names.index(n))
    return tuple(idx)


class UDE(AbstractUDE):
    """``dy/dt = known(t, y) + P · correction(t, y[inputs])``.

    ``inputs``/``outputs`` name the states the network reads and writes (default: all), so a
    correction can act on a subset of the state. Example — the UDE paper's Lotka–Volterra model,
    a diffrax vector field (``diffrax.ODETerm(model)``, or :func:`ude.solve.solve`):

    >>> import jax.numpy as jnp, jax.random as jr
    >>> from ude.nn import MLP
    >>> from ude.physics import LotkaVolterra
    >>> known = LotkaVolterra(1.3, 0.9, 1.8, 0.8).keep("growth", "death")
    >>> net = MLP(2, 2, width=5, depth=3, activation="rbf", key=jr.key(0))
    >>> model = UDE(known, net)
    >>> model(0.0, jnp.array([0.44, 4.6])).shape
    (2,)
    """

    known: AbstractPhysics
    correction: AbstractCorrection | None
    inputs: tuple[int, ...] = eqx.field(static=True)
    outputs: tuple[int, ...] = eqx.field(static=True)
    state_names: tuple[str, ...] = eqx.field(static=True)

    # the arguments are validated by hand below (a ValueError naming the field, as the tests check);
    # exempt from the tests' runtime type checker, which would raise its own error first
    @no_type_check
    def __init__(
        self,
        known: AbstractPhysics,
        correction: AbstractCorrection | None = None,
        *,
        inputs: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
    ):
        if not isinstance(known, AbstractPhysics):
            raise ValueError(f"UDE: known must be an AbstractPhysics, got {type(known).__name__}")
        self.state_names = tuple(known.state_names)
        self.inputs = _indices(inputs, self.state_names, "inputs")
        self.outputs = _indices(outputs, self.state_names, "outputs")
        if correction is not None:
            if correction.in_size != len(self.inputs):
                raise ValueError(
                    f"UDE: correction.in_size={correction.in_size} but inputs has "
                    f"{len(self.inputs)} states {[self.state_names[i] for i in self.inputs]}"
                )
            if correction.out_size != len(self.outputs):
                raise ValueError(
                    f"UDE: correction.out_size={correction.out_size} but outputs has "
                    f"{len(self.outputs)} states {[self.state_names[i] for i in self.outputs]}"
                )
        self.known = known
        self.correction = correction

    def missing(self, t, y: State) -> State:
        """The network's contribution to dy/dt as a full state vector (zeros where it does not
        act)."""
        if self.correction is None:
            return jnp.zeros_like(y)
        everything = tuple(range(len(self.state_names)))
        u = self.correction(t, y if self.inputs == everything else y[jnp.asarray(self.inputs)])
        if self.outputs == everything:
            return u.astype(y.dtype)
        return jnp.zeros_like(y).at[jnp.asarray(self.outputs)].set(u)

    def __call__(self, t, y, args=None):
        return self.known(t, y, args) + self.missing(t, y)


class HybridUDE(AbstractUDE):
    """Any hybrid right-hand side ``fn(t, y, physics, networks) -> dy/dt``.

    For models where the network does not simply add, e.g. a learned rate inside a known law::

        def fn(t, y, physics, nets):
            s, i, r = y
            beta = jax.nn.softplus(nets["beta"](t, y)[0])
            return jnp.stack(
                [-beta * s * i, beta * s * i - physics.p("gamma") * i, physics.p("gamma") * i]
            )


        model = HybridUDE(fn, SIR(0.3, 0.1), {"beta": MLP(3, 1, width=8, depth=1, key=key)})
    """

    fn: Callable = eqx.field(static=True)
    physics: AbstractPhysics
    networks: PyTree
    state_names: tuple[str, ...] = eqx.field(static=True)

    # the arguments are validated by hand below (a ValueError naming the field, as the tests check);
    # exempt from the tests' runtime type checker, which would raise its own error first
    @no_type_check
    def __init__(self, fn: Callable, physics: AbstractPhysics, networks: PyTree):
        if not callable(fn):
            raise ValueError("HybridUDE: fn must be callable (t, y, physics, networks) -> dy/dt")
        self.fn = fn
        self.physics = physics
        self.networks = networks
        self.state_names = tuple(physics.state_names)

    def __call__(self, t, y, args=None):
        return self.fn(t, y, self.physics, self.networks)


def trainable_filter(model: PyTree, *, networks: bool = True) -> PyTree:
    """A bool pytree for ``eqx.partition``: True on the arrays that should learn.

    Network weights learn (unless ``networks=False``); physics :class:`Parameter` s learn only when
    ``trainable`` is set; every other leaf (input scales, static data) is frozen.
    ``MLP.input_scale`` is frozen too.
    """

    def leaf_spec(x):
        if isinstance(x, Parameter):
            return _param_spec(x)
        return networks and eqx.is_inexact_array(x)

    spec = jax.tree_util.tree_map(leaf_spec, model, is_leaf=lambda x: isinstance(x, Parameter))
    # input scales are data, not parameters
    spec = _freeze_input_scales(model, spec)
    return spec


def _param_spec(p: Parameter):
    return eqx.tree_at(lambda q: q.raw, p, p.trainable, is_leaf=lambda x: x is None)


def _freeze_input_scales(model, spec):
    from .nn import MLP

    def fix(m, s):
        if isinstance(m, MLP) and m.input_scale is not None:
            return eqx.tree_at(lambda q: q.input_scale, s, False)
        return s

    return jax.tree_util.tree_map(fix, model, spec, is_leaf=lambda x: isinstance(x, MLP))


def partition(model: PyTree, *, networks: bool = True) -> tuple[PyTree, PyTree]:
    """``(params, static)``: what ``jax.grad`` should see, and the rest (``eqx.combine`` undoes
    it)."""
    return eqx.partition(model, trainable_filter(model, networks=networks))


def count_params(model: PyTree) -> int:
    params, _ = partition(model)
    return sum(x.size for x in jax.tree_util.tree_leaves(params))


def network_weights(model: PyTree) -> list[Array]:
    """The trainable arrays that are not physics parameters (the L2 penalty acts on these)."""
    no_phys = jax.tree_util.tree_map(
        lambda x: None if isinstance(x, Parameter) else x,
        model,
        is_leaf=lambda x: isinstance(x, Parameter),
    )
    params, _ = partition(no_phys)
    return [x for x in jax.tree_util.tree_leaves(params)]
