"""Progress of a fit's stages as it really goes: compiling, running, done.

One :class:`StageProgress` per stage, fed after every chunk of fused steps by
:func:`ude.train.loop.run_stages`. Until the first chunk returns it says ``compiling``; the ETA
and rate count run time only, from the end of the first chunk (which holds the compile) on; when
the stage ends a summary line stays, e.g. ``stage 1/2 adam: 200 steps, loss 0.7255, 3 rejected,
8.1 s``.

How it shows is one of :data:`MODES`, resolved by :func:`progress_mode`. This module is the only
reader of the environment variables ``UDE_PROGRESS`` (the mode, for ``verbose=True``) and
``UDE_PROGRESS_EVERY`` (seconds between plain lines):

``bar``
    a tqdm bar, redrawn in place with ``\\r`` (for a terminal or a notebook);
``plain``
    one line per update and no ``\\r``, at most one every ``UDE_PROGRESS_EVERY`` seconds (default
    1; 0: after every chunk), e.g. ``stage 1/2 adam 100/200 loss=0.7255 rejected=0 | 2.1 s
    elapsed, 48 steps/s, eta 2.0 s`` (for a log file or a pipe);
``none``
    nothing;
``auto``
    (the default) ``bar`` when stderr is a terminal or a Jupyter kernel's stream, else ``plain``.
"""

import os
import sys
import time
from collections.abc import Callable

__all__ = ["MODES", "StageProgress", "format_seconds", "progress_mode"]

MODES = ("auto", "bar", "plain", "none")
ENV_MODE = "UDE_PROGRESS"
ENV_EVERY = "UDE_PROGRESS_EVERY"
DEFAULT_EVERY = 1.0  # seconds between plain lines


def _interactive(stream) -> bool:
    """Whether ``stream`` redraws a ``\\r`` line in place: a terminal or a Jupyter kernel's."""
    if type(stream).__module__.split(".")[0] == "ipykernel":
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_mode(verbose: bool | str = True, file=None) -> str:
    """``"bar"``, ``"plain"`` or ``"none"``: how a fit shows its progress on ``file`` (stderr).

    ``verbose`` False is ``"none"``; a string is a mode of :data:`MODES` and wins over the
    environment; True reads ``UDE_PROGRESS`` (unset or empty: ``"auto"``).
    """
    if verbose is False or verbose is None:
        return "none"
    mode = verbose if isinstance(verbose, str) else os.environ.get(ENV_MODE, "") or "auto"
    mode = mode.strip().lower()
    if mode not in MODES:
        source = "verbose" if isinstance(verbose, str) else ENV_MODE
        raise ValueError(f"{source}={mode!r}: the progress mode is one of {', '.join(MODES)}")
    if mode == "auto":
        mode = "bar" if _interactive(sys.stderr if file is None else file) else "plain"
    return mode


def _every() -> float:
    raw = os.environ.get(ENV_EVERY, "")
    if not raw.strip():
        return DEFAULT_EVERY
    try:
        every = float(raw)
    except ValueError:
        every = -1.0
    if not every >= 0:
        raise ValueError(f"{ENV_EVERY}={raw!r}: give seconds between progress lines, >= 0")
    return every


def format_seconds(s: float) -> str:
    """``8.1 s``, ``2m05s``, ``1h02m``."""
    if s < 59.95:
        return f"{s:.1f} s"
    s = round(s)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


# how a postfix entry reads in the summary line; others read "key value"
_SUMMARY = {
    "rejected": "{v} rejected",
    "rejecting": "{v} rejecting",
    "median_loss": "median loss {v}",
}
COMPILING = "compiling..."


class StageProgress:
    """The progress of one stage of ``total`` steps, ``initial`` of them done (a resume).

    Call :meth:`update` after each chunk with its number of steps and the postfix (``{"loss":
    "0.7255", "rejected": 0}``), and :meth:`close` when the stage ends. ``mode`` is one of
    ``"bar"``, ``"plain"``, ``"none"`` (see :func:`progress_mode`); ``clock`` (seconds) and
    ``every`` (seconds between plain lines; ``None``: ``UDE_PROGRESS_EVERY``) are for tests.
    """

    def __init__(
        self,
        desc: str,
        total: int,
        initial: int = 0,
        *,
        mode: str,
        file=None,
        clock: Callable[[], float] = time.perf_counter,
        every: float | None = None,
    ):
        if mode not in ("bar", "plain", "none"):
            raise ValueError(f"mode must be 'bar', 'plain' or 'none' (resolved), got {mode!r}")
        self.desc, self.total, self.mode = desc, total, mode
        self.file = sys.stderr if file is None else file
        self.clock = clock
        self.every = (_every() if mode == "plain" else 0.0) if every is None else every
        self.n = self.initial = initial
        self.postfix: dict = {}
        self.t0 = clock()  # the stage's start: compile included
        self.t_run = None  # the end of the first chunk: run time counts from here ...
        self.n_run = initial  # ... and steps from this count
        self.last_line = None
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                leave=False,
                file=self.file,
                dynamic_ncols=True,
                unit="step",
                smoothing=0,  # the mean rate since the first chunk, not an average with compile
                postfix=COMPILING,
            )
            self.bar._time = clock  # one clock for the bar and the summary
            self.bar.start_t = self.bar.last_print_t = clock()
        elif mode == "plain":
            self._line(f"{self.desc} {self.n}/{self.total} {COMPILING}")

    # -- numbers ---------------------------------------------------------------------------------
    def rate(self) -> float | None:
        """Steps per second of run time (after the first chunk); ``None`` before there is any."""
        if self.t_run is None or self.n <= self.n_run:
            return None
        dt = self.clock() - self.t_run
        return (self.n - self.n_run) / dt if dt > 0 else None

    def eta(self) -> float | None:
        """Seconds left at the current rate; ``None`` while unknown (before the second chunk)."""
        rate = self.rate()
        return None if rate is None else max(self.total - self.n, 0) / rate

    def elapsed(self) -> float:
        """Seconds since the stage began, compile included."""
        return self.clock() - self.t0

    # -- events ----------------------------------------------------------------------------------
    def update(self, k: int, postfix: dict | None = None):
        """After a chunk of ``k`` steps; ``postfix``: its last loss and rejected steps."""
        first = self.t_run is None
        self.n += k
        if postfix:
            self.postfix = dict(postfix)
        if first:  # the compile is over: from here on the time is run time
            self.t_run, self.n_run = self.clock(), self.n
        if self.mode == "bar":
            if first:  # tqdm's rate and ETA from now on, over the steps from now on
                self.bar.initial, self.bar.start_t = self.bar.n + k, self.clock()
            self.bar.set_postfix(self.postfix, refresh=False)
            self.bar.update(k)
            self.bar.refresh()  # the new postfix even when tqdm's update skips a redraw
        elif self.mode == "plain":
            now = self.clock()
            due = first or self.last_line is None or now - self.last_line >= self.every
            if due and self.n < self.total:  # the stage's end gets its summary line instead
                self._line(self._status(first))

    def close(self, note: str | None = None, summary: bool = True):
        """The stage is over: the bar goes, a summary line stays (unless ``summary`` is False).
        ``note``: why it ended, when not by running its steps (``converged``)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if summary and self.mode != "none":
            self._line(self.summary(note))

    def summary(self, note: str | None = None) -> str:
        """``stage 1/2 adam: 200 steps, loss 0.7255, 3 rejected, 8.1 s``."""
        parts = [f"{self.n} steps"]
        parts += [_SUMMARY.get(k, k + " {v}").format(v=v) for k, v in self.postfix.items()]
        if note:
            parts.append(note)
        parts.append(format_seconds(self.elapsed()))
        return f"{self.desc}: {', '.join(parts)}"

    # -- output ----------------------------------------------------------------------------------
    def _status(self, first: bool) -> str:
        post = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        head = f"{self.desc} {self.n}/{self.total}" + (f" {post}" if post else "")
        if first:
            return f"{head} | compiled, first chunk in {format_seconds(self.elapsed())}"
        rate, eta = self.rate(), self.eta()
        tail = f"{format_seconds(self.elapsed())} elapsed"
        if rate is not None:
            tail += f", {rate:.0f} steps/s" if rate >= 100 else f", {rate:.3g} steps/s"
            tail += f", eta {format_seconds(eta)}"
        return f"{head} | {tail}"

    def _line(self, text: str):
        if self.mode == "bar":
            from tqdm.auto import tqdm

            tqdm.write(text, file=self.file)
        else:
            print(text, file=self.file, flush=True)
            self.last_line = self.clock()
