"""The ude side of the step benchmarks: ``ude.train.fit``'s chunk program (SingleShooting + Adam).

Fused mode runs ``fit``'s own program (``_run_chunk``: ``FUSED`` steps per call). Per-step mode
runs :class:`ude.train.Stepper`, the building block for a loop of one's own (one step per call).
"""

from __future__ import annotations

import dataclasses
import inspect

import jax.numpy as jnp
import jax.random as jr
from common import LR
from handwritten import Program

from ude.model import partition
from ude.train import Adam, SingleShooting, Stepper
from ude.train.fit import _run_chunk, initial_carry


def ude_step(model, data, options, fused: int, steps: int = 10**6, lr: float = LR):
    """``(carry, one, many)`` like :func:`handwritten.make`: one step per jitted call, or ``fused``.
    ``one`` is a :class:`Stepper` driven through the same ``program(carry) -> (carry, ...)``
    calls."""
    strategy = SingleShooting(options=options)
    stage = Adam(lr=lr, steps=steps)
    params, static = partition(model)
    carry = initial_carry(params, strategy.init(model, data), stage, jr.key(0))
    remaining = jnp.asarray(steps)
    if "total" in inspect.signature(_run_chunk).parameters:
        # fit passes the stage length as a traced ``total`` (stages of any length share a program)
        lead = (strategy, dataclasses.replace(stage, steps=0), jnp.asarray(steps), remaining)
    else:
        lead = (strategy, stage, remaining)
    stepper = Stepper(model, data, strategy, stage, key=jr.key(0))
    return carry, StepperProgram(stepper), Program(_run_chunk, static, data, *lead, fused)


class StepperProgram:
    """A :class:`Stepper` behind :class:`handwritten.Program`'s interface: ``self(state)`` takes one
    step from ``state``; the bench's initial carry (a tuple) stands for the stepper's first state,
    so every timing repeat restarts from the same parameters, like the other candidates."""

    def __init__(self, stepper):
        self.stepper, self.first = stepper, list(stepper.state)

    def __call__(self, state):
        s = self.stepper
        s.state = state if isinstance(state, list) else self.first
        s.step()
        return s.state, None

    def compiled(self, state=None):
        """The compiled one-step program (``.as_text()``, ``.memory_analysis()``)."""
        s = self.stepper
        return s._run.lower(self.first, s._inputs, 0).compile()
