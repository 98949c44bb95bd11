"""Hybrid vector fields: known physics + neural corrections, and trainable/frozen filters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, no_type_check

import equinox as eqx
import jax
import jax.numpy as jnp

from ._types import Array, PyTree, State
from .nn import AbstractCorrection
from .physics import AbstractPhysics, Parameter, as_physics
from .physics.signals import read_signals


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

    ``known`` is any vector field: a shipped system (:mod:`ude.physics`), equations as text
    (:class:`~ude.physics.Equations`), or a plain function ``f(t, y, args) -> dy/dt`` (or
    ``f(t, y)``) or ``eqx.Module`` of your own, with its state names given as ``states=`` (it is
    wrapped in :class:`~ude.physics.VectorField`); None means no known part.

    **What trains** (:func:`trainable_filter`): the correction's weights, and the known part's
    :class:`~ude.physics.Parameter` s marked ``trainable=True``. Every other array of the known
    part is frozen: a constant ``alpha = jnp.array(0.7)`` in your module stays 0.7.

    ``inputs``/``outputs`` name the states the network reads and writes (default: all), so a
    correction can act on a subset of the state; ``signals`` names inputs ``u(t)`` it reads too
    (after the states), taken from the :class:`~ude.data.inputs.InputSignal` passed as ``args``.
    Example — the UDE paper's Lotka–Volterra model,
    a diffrax vector field (``diffrax.ODETerm(model)``, or :func:`ude.solve.solve`):

    >>> import jax.numpy as jnp, jax.random as jr
    >>> from ude.nn import MLP
    >>> from ude.physics import LotkaVolterra
    >>> known = LotkaVolterra(1.3, 0.9, 1.8, 0.8).keep("growth", "death")
    >>> net = MLP(2, 2, width=5, depth=3, activation="rbf", key=jr.key(0))
    >>> model = UDE(known, net)
    >>> model(0.0, jnp.array([0.44, 4.6])).shape
    (2,)

    The same known part as a plain function:

    >>> def known_part(t, y, args):
    ...     return jnp.stack([1.3 * y[0], -1.8 * y[1]])
    >>> model = UDE(known_part, net, states=("x", "y"))
    """

    known: AbstractPhysics
    correction: AbstractCorrection | None
    inputs: tuple[int, ...] = eqx.field(static=True)
    outputs: tuple[int, ...] = eqx.field(static=True)
    state_names: tuple[str, ...] = eqx.field(static=True)
    signals: tuple[str, ...] = eqx.field(static=True)

    # the arguments are validated by hand below (a ValueError naming the field, as the tests check);
    # exempt from the tests' runtime type checker, which would raise its own error first
    @no_type_check
    def __init__(
        self,
        known: AbstractPhysics | Callable | None,
        correction: AbstractCorrection | None = None,
        *,
        states: Sequence[str] | None = None,
        inputs: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        signals: Sequence[str] = (),
    ):
        known = as_physics(known, states, who="UDE")
        self.state_names = tuple(known.state_names)
        self.inputs = _indices(inputs, self.state_names, "inputs")
        self.outputs = _indices(outputs, self.state_names, "outputs")
        self.signals = tuple(signals)
        clash = sorted(set(self.signals) & set(self.state_names))
        if clash or len(set(self.signals)) != len(self.signals):
            raise ValueError(f"UDE: signals must be distinct names, not states; got {signals}")
        if correction is not None:
            n_in = len(self.inputs) + len(self.signals)
            if correction.in_size != n_in:
                raise ValueError(
                    f"UDE: correction.in_size={correction.in_size} but it reads {n_in} values: "
                    f"the states {[self.state_names[i] for i in self.inputs]}"
                    + (f" and the signals {list(self.signals)}" if self.signals else "")
                )
            if correction.out_size != len(self.outputs):
                raise ValueError(
                    f"UDE: correction.out_size={correction.out_size} but outputs has "
                    f"{len(self.outputs)} states {[self.state_names[i] for i in self.outputs]}"
                )
        self.known = known
        self.correction = correction

    def missing(self, t, y: State, args=None) -> State:
        """The network's contribution to dy/dt as a full state vector (zeros where it does not
        act). A network reading ``signals`` takes their values at ``t`` from ``args`` (an
        :class:`~ude.data.inputs.InputSignal`)."""
        if self.correction is None:
            return jnp.zeros_like(y)
        everything = tuple(range(len(self.state_names)))
        x = y if self.inputs == everything else y[jnp.asarray(self.inputs)]
        if self.signals:
            u = read_signals(args, self.signals, t, "UDE: the network reads the signals")
            x = jnp.concatenate([x, u.astype(y.dtype)])
        u = self.correction(t, x)
        if self.outputs == everything:
            return u.astype(y.dtype)
        return jnp.zeros_like(y).at[jnp.asarray(self.outputs)].set(u)

    def __call__(self, t, y, args=None):
        return self.known(t, y, args) + self.missing(t, y, args)


class HybridUDE(AbstractUDE):
    """Any hybrid right-hand side ``fn(t, y, physics, networks) -> dy/dt``.

    ``physics`` is known physics as :class:`UDE` takes it (a system, equations, or a function or
    module with ``states=``); what trains is as there: the networks, and trainable Parameters.
    :meth:`missing` is what ``fn`` adds to ``physics`` (what discovery regresses).

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
    def __init__(
        self,
        fn: Callable,
        physics: AbstractPhysics | Callable | None,
        networks: PyTree,
        *,
        states: Sequence[str] | None = None,
    ):
        if not callable(fn):
            raise ValueError("HybridUDE: fn must be callable (t, y, physics, networks) -> dy/dt")
        self.fn = fn
        self.physics = as_physics(physics, states, who="HybridUDE")
        self.networks = networks
        self.state_names = tuple(self.physics.state_names)

    @property
    def known(self) -> AbstractPhysics:
        return self.physics

    def missing(self, t, y: State) -> State:
        """What the hybrid right-hand side adds to the known physics alone."""
        return self(t, y) - self.physics(t, y)

    def __call__(self, t, y, args=None):
        return self.fn(t, y, self.physics, self.networks)


def trainable_filter(model: PyTree, *, networks: bool = True) -> PyTree:
    """A bool pytree for ``eqx.partition``: True on the arrays that should learn.

    Frozen by default: inside known physics (any :class:`~ude.physics.AbstractPhysics`, which a
    user's function or module is wrapped in) only the :class:`Parameter` s marked ``trainable``
    learn, every other array is a constant. Outside it, the float arrays of the corrections learn
    (network weights, a discovered model's coefficients; none when ``networks=False``), except
    ``MLP.input_scale`` (data, not a parameter); integer and static leaves never do.
    """

    def physics_spec(physics):
        # Parameters by their flag, every other leaf of the known part frozen
        return jax.tree_util.tree_map(
            lambda x: _param_spec(x) if isinstance(x, Parameter) else False,
            physics,
            is_leaf=lambda x: isinstance(x, Parameter),
        )

    def leaf_spec(x):
        if isinstance(x, AbstractPhysics):
            return physics_spec(x)
        if isinstance(x, Parameter):
            return _param_spec(x)
        return networks and eqx.is_inexact_array(x)

    spec = jax.tree_util.tree_map(
        leaf_spec, model, is_leaf=lambda x: isinstance(x, (Parameter, AbstractPhysics))
    )
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
