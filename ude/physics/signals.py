"""Reading named inputs ``u(t)`` from the signal a solve passes as diffrax's ``args``."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

__all__ = ["read_signals"]


def read_signals(signal, names: Sequence[str], t, reader: str):
    """The values of the inputs ``names`` at ``t`` (an array, in that order) from ``signal``, an
    :class:`~ude.data.inputs.InputSignal` (anything with ``names`` that is called at ``t``).

    ``reader`` starts the error messages, e.g. ``"UDE: the network reads the signals"``; raises
    ``ValueError`` when there is no signal or it lacks one of the names."""
    have = getattr(signal, "names", None)
    if signal is None or have is None:
        raise ValueError(
            f"{reader} {list(names)}; pass their signal as args "
            "(solve(..., args=InputSignal(ts, us, names)))"
        )
    missing = [n for n in names if n not in have]
    who = reader.split(":", 1)[0]
    if missing:
        raise ValueError(f"{who}: the input signal has no {missing} (it has {list(have)})")
    return signal(t)[jnp.asarray([list(have).index(n) for n in names])]
