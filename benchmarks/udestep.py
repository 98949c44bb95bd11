"""The ude side of the step benchmarks: ``ude.train.fit``'s chunk program (SingleShooting + Adam)."""

from __future__ import annotations

import dataclasses
import inspect

import jax.numpy as jnp
import jax.random as jr

from common import LR
from handwritten import Program
from ude.model import partition
from ude.train import Adam, SingleShooting
from ude.train.fit import _run_chunk


def ude_step(model, data, options, fused: int, steps: int = 10**6, lr: float = LR):
    """``(carry, one, many)`` like :func:`handwritten.make`: one step per jitted call, or ``fused``."""
    strategy = SingleShooting(options=options)
    stage = Adam(lr=lr, steps=steps)
    params, static = partition(model)
    extra = strategy.init(model, data)
    dtype = data.ys.dtype
    carry = (params, extra, stage.optimizer().init((params, extra)), jr.key(0), jnp.ones((), dtype),
             jnp.array(False), jnp.array(jnp.inf, dtype))
    remaining = jnp.asarray(steps)
    if "total" in inspect.signature(_run_chunk).parameters:
        # fit passes the stage length as a traced ``total`` (stages of any length share a program)
        lead = (strategy, dataclasses.replace(stage, steps=0), jnp.asarray(steps), remaining)
    else:
        lead = (strategy, stage, remaining)

    return carry, Program(_run_chunk, static, data, *lead, 1), Program(_run_chunk, static, data, *lead, fused)
