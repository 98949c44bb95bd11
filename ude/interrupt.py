"""Graceful stops: SIGINT (Ctrl-C) and SIGTERM end a run at a consistent point.

While a fit is running (inside :meth:`StopRequest.armed`), the first signal only sets a flag; the
fit notices it after the current chunk of steps, writes a checkpoint of exactly that state and
raises :class:`KeyboardInterrupt`, so ``ude resume DIR`` continues bit-for-bit. Outside a fit (data,
discovery, evaluation: every output there is written atomically and skipped when present), and on a
second signal, :class:`KeyboardInterrupt` is raised at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["StopRequest", "graceful_signals"]


class StopRequest:
    """A flag set by a signal; call it (``stop()``) to ask whether a stop was requested.

    Attributes:
        signum: the signal that asked for the stop (None: none yet).
    """

    def __init__(self):
        self.signum: int | None = None
        self._armed = 0

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask for a stop (what the signal handler does); raises when nobody polls the flag."""
        first = self.signum is None
        self.signum = signum
        if not (first and self._armed):
            raise KeyboardInterrupt(f"{self.name} received")

    @contextlib.contextmanager
    def armed(self):
        """A block that polls the flag (a fit); a stop requested inside it but not acted on (it
        came during the last chunk) is raised when the block ends."""
        self._armed += 1
        try:
            yield self
        finally:
            self._armed -= 1
        if self.signum is not None and not self._armed:
            raise KeyboardInterrupt(f"{self.name} received")


@contextlib.contextmanager
def graceful_signals(signals=(signal.SIGINT, signal.SIGTERM)):
    """Route ``signals`` to a :class:`StopRequest` for the duration of the block (main thread
    only; elsewhere the block runs with the default handlers). Yields the request."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {}

    def handler(signum, frame):
        stop.request(signum)

    try:
        for s in signals:
            previous[s] = signal.signal(s, handler)
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
