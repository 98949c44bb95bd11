"""JAX's persistent compilation cache for ude's programs: a second run skips XLA compilation.

A training stage's program takes ~1.8 s of XLA compilation (and ~1.4 s of tracing) on a 2-core
CPU; runs of the same config, or of configs with the same shapes, compile the same programs. The
``ude`` command turns JAX's on-disk cache on (:func:`enable`): the second ``ude run`` of a config
loads its compiled programs instead. Where: ``$UDE_COMPILATION_CACHE`` if set (``0``, ``off`` or
an empty value: no cache), else ``$XDG_CACHE_HOME/ude/jax`` (``~/.cache/ude/jax``). JAX keys the
entries by program, jax/jaxlib version and device, so a changed program or upgrade misses cleanly,
and an unreadable entry is recompiled with a warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

ENV = "UDE_COMPILATION_CACHE"
_OFF = ("", "0", "off", "false", "no", "none")


def default_dir() -> Path | None:
    """The cache directory the environment asks for, or None when it switches the cache off."""
    value = os.environ.get(ENV)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ude" / "jax"


def enable(
    directory: str | os.PathLike | None = None, *, min_compile_seconds: float = 0.2
) -> Path | None:
    """Turn JAX's persistent compilation cache on in ``directory`` (default :func:`default_dir`);
    programs that took at least ``min_compile_seconds`` to compile are stored. Returns the
    directory, or None when the cache stays off (switched off, or the directory cannot be made)."""
    import jax

    path = Path(directory).expanduser() if directory is not None else default_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home: run without a cache rather than fail
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    return path


class CompileLog(logging.Handler):
    """The names of the programs JAX compiles inside ``with CompileLog() as log:`` (``log.names``,
    e.g. ``["jit(chunk_steps)", "jit(squeeze)"]``), read from ``jax_log_compiles``'s records —
    for tests and benchmarks that count compiled programs."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []
        self._was = False

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Compiling "):
            self.names.append(msg.split()[1])

    def __enter__(self) -> CompileLog:
        import jax

        self._was = bool(jax.config.jax_log_compiles)
        logging.getLogger("jax").addHandler(self)
        jax.config.update("jax_log_compiles", True)
        return self

    def __exit__(self, *exc):
        import jax

        jax.config.update("jax_log_compiles", self._was)
        logging.getLogger("jax").removeHandler(self)
