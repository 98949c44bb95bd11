"""A compiled training step for your own loop: the fit loop's step, with its arguments split once.

:func:`ude.train.fit` runs many optimiser steps per call and pays Python's dispatch once per chunk.
A custom loop that calls one step at a time (logging, schedules of its own, interleaved
evaluation) would pay ``eqx.filter_jit``'s per-call partitioning of model, data, strategy and
stage — on a small UDE about as long as the step itself. :class:`Stepper` partitions and flattens
them once and calls a ``jax.jit`` program with flat lists of arrays::

    stepper = Stepper(model, data, SingleShooting(), Adam(lr=1e-3, steps=500), key=jr.key(0))
    for i in range(500):
        losses = stepper.step()  # one optimiser step (``steps_per_call`` of them)
        if i % 100 == 0:
            print(i, float(losses[-1]))
    model = stepper.model

The step is exactly :func:`ude.train.step.chunk_steps` (rejection of non-finite steps, learning-rate
back-off, L-BFGS convergence), so a Stepper run and a ``fit`` of the same stage agree step for step.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..model import partition
from .stages import AbstractStage
from .step import FitState, chunk_steps, initial_state
from .strategies import AbstractStrategy


class Stepper:
    """``steps_per_call`` optimiser steps of ``stage`` per :meth:`step` call.

    Attributes:
        state: the carry (a :class:`~ude.train.step.FitState`) as a flat list of arrays (save it
            and assign it back to rewind).
        steps_done: steps taken so far (at most ``stage.steps``; further calls change nothing).
    """

    def __init__(
        self,
        model,
        data,
        strategy: AbstractStrategy,
        stage: AbstractStage,
        *,
        key,
        steps_per_call: int = 1,
    ):
        if not isinstance(steps_per_call, int) or steps_per_call < 1:
            raise ValueError(
                f"Stepper: steps_per_call must be a positive integer, got {steps_per_call!r}"
            )
        params, static = partition(model)
        carry = initial_state(params, strategy.init(model, data, None), stage, key)
        self.state, carry_def = jax.tree_util.tree_flatten(carry)
        # as in fit: the stage's length is traced, so stages differing in length share the program
        args = (data, strategy, dataclasses.replace(stage, steps=0), jnp.asarray(stage.steps))
        dynamic, fixed = eqx.partition(args, eqx.is_array)
        self._inputs, inputs_def = jax.tree_util.tree_flatten(dynamic)
        self._static, self._stage, self._chunk = static, stage, steps_per_call
        self._carry_def = carry_def
        self.steps_done = 0

        def run(state, inputs, remaining):
            carry = jax.tree_util.tree_unflatten(carry_def, state)
            data, strategy, stage, total = eqx.combine(
                jax.tree_util.tree_unflatten(inputs_def, inputs), fixed
            )
            carry, record = chunk_steps(
                carry, static, data, strategy, stage, total, remaining, steps_per_call
            )
            return jax.tree_util.tree_leaves(carry), record.loss

        self._run = jax.jit(run)

    def step(self):
        """Take the next ``steps_per_call`` steps; returns their losses (a device array; steps past
        the end of the stage are no-ops and repeat nothing)."""
        remaining = np.int32(self._stage.steps - self.steps_done)
        self.state, losses = self._run(self.state, self._inputs, remaining)
        self.steps_done = min(self.steps_done + self._chunk, self._stage.steps)
        return losses

    @property
    def fit_state(self) -> FitState:
        """The carry as a :class:`~ude.train.step.FitState`."""
        return jax.tree_util.tree_unflatten(self._carry_def, self.state)

    @property
    def model(self):
        """The model with the current parameters."""
        return eqx.combine(self.fit_state.params, self._static)

    @property
    def extra(self):
        """The strategy's extra parameters (learned initial states, segment starts) or None."""
        return self.fit_state.extra
