"""The pipeline's progress messages: one line each, handed to a callback (the CLI prints them).

Nothing in :mod:`ude.pipeline` prints; a stage that has something to say calls :func:`emit`.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Log", "emit"]

Log = Callable[[str], None] | None
"""A progress callback ``(message) -> None``, or None for silence."""


def emit(log: Log, msg: str) -> None:
    """``log(msg)`` unless ``log`` is None."""
    if log is not None:
        log(msg)
