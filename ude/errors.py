"""The errors ``ude`` raises on purpose, under one base class.

Every error a user can act on derives from :class:`UdeError`, and each also derives from the
built-in class it used to be (``ValueError`` or ``RuntimeError``), so ``except ValueError`` in a
user's code keeps working. The command line maps them to exit codes in one place
(:func:`exit_code`): a problem with what the user gave (a config, a data file, a run directory)
exits 2, a run that was tried and failed exits 1.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "UdeError",
    "ConfigError",
    "DataError",
    "RunDirError",
    "RunLocked",
    "FitFailed",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_UNDERFIT",
    "exit_code",
]

EXIT_OK = 0
EXIT_FAILED = 1  # the run was tried and did not succeed (a diverged fit, an interruption)
EXIT_USAGE = 2  # what the user gave cannot be used (config, data file, run directory, argv)
EXIT_UNDERFIT = 3  # the run finished but its fit is underfit (ude.quality; --allow-underfit: 0)


class UdeError(Exception):
    """Base class of the errors ``ude`` raises on purpose."""

    exit_code: int = EXIT_FAILED


class ConfigError(UdeError, ValueError):
    """An invalid experiment config. ``messages`` lists every problem, each ``"key.path: text"``;
    ``source`` names the file when there is one."""

    exit_code = EXIT_USAGE

    def __init__(self, messages: Sequence[str], source: str | None = None):
        self.messages = list(messages) or ["invalid config"]
        self.source = source
        super().__init__("\n".join(self.messages))


class DataError(UdeError, ValueError):
    """The data cannot be read or built (a broken table or saved dataset, a failed truth solve)."""

    exit_code = EXIT_USAGE


class RunDirError(UdeError, ValueError):
    """The run directory cannot be used (exists and is not empty, is not a run, holds a file that
    cannot be restored, or another process holds its lock)."""

    exit_code = EXIT_USAGE


class RunLocked(RunDirError):
    """Another process holds the run directory's lock. ``pid`` is the holder's (None if unknown)."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


class FitFailed(UdeError, RuntimeError):
    """Training ended without a usable model: every step of a stage was rejected, or the final loss
    is not finite. fit.json, history.csv and metrics.json record it; the checkpoints are kept."""

    exit_code = EXIT_FAILED


def exit_code(error: BaseException) -> int:
    """The command line's exit status for ``error``: its class's ``exit_code`` for a
    :class:`UdeError`, :data:`EXIT_FAILED` for anything else (an unexpected failure of a run)."""
    return error.exit_code if isinstance(error, UdeError) else EXIT_FAILED
