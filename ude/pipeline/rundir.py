"""The run directory: what it holds, where a new one goes, and how it is opened for writing.

::

    config.yaml       the resolved config (re-read by `ude resume`)
    data.npz/.json    the dataset (ude.data.save)
    checkpoints/      fit checkpoints (resume continues from them); checkpoints-<phase>/ for the
                      pretrain and polish phases
    model.eqx         the fitted UDE (+ the strategy's extra parameters); fit.json; history.csv
    ensemble.eqx/.json  with ``parallel.ensemble > 1``: every member, stacked, and their final
                      losses (model.eqx is then the member with the lowest loss)
    discovery.json    the sparse regression and the refitted equations; discovered.eqx;
                      refit_history.csv
    results.npz       the arrays the figures are drawn from
    metrics.json      losses, discovered terms, extrapolation errors, wall time
    figures/          PNG/PDF
    .lock             held while a process writes the directory (:mod:`ude.pipeline.lock`)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from pathlib import Path

from .._io import atomic_write_text
from ..config import ExperimentConfig, dump_config, load_config
from ..errors import RunDirError
from . import lock

__all__ = [
    "FILES",
    "default_run_dir",
    "check_new_dir",
    "prepare_run_dir",
    "locked_run_dir",
    "load_run",
]

FILES = {
    "config": "config.yaml",
    "data": "data",
    "model": "model.eqx",
    "fit": "fit.json",
    "history": "history.csv",
    "discovery": "discovery.json",
    "discovered": "discovered.eqx",
    "refit_history": "refit_history.csv",
    "results": "results.npz",
    "metrics": "metrics.json",
    "checkpoints": "checkpoints",
    "figures": "figures",
    "ensemble": "ensemble.eqx",
    "ensemble_info": "ensemble.json",
}
"""The names of a run directory's files, by role."""


def default_run_dir(cfg: ExperimentConfig, root=None) -> Path:
    """``<output.dir>/<name>-<YYYYmmdd-HHMMSS>`` (with a suffix if that exists)."""
    root = Path(root if root is not None else cfg.output.dir)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{cfg.name or 'experiment'}-{stamp}"
    out, i = base, 2
    while out.exists():
        out = base.with_name(f"{base.name}-{i}")
        i += 1
    return out


def check_new_dir(out: Path) -> None:
    """Refuse ``out`` for a new run unless it is missing or empty (a lock file aside)."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} exists and is not a directory")
    if out.exists() and any(p.name != lock.LOCK_NAME for p in out.iterdir()):
        raise RunDirError(
            f"{out} already exists and is not empty; choose another --out, or "
            f"continue it with `ude resume {out}`"
        )


def prepare_run_dir(cfg: ExperimentConfig, out_dir, *, resume: bool = False) -> Path:
    """Create ``out_dir`` and write ``config.yaml``; refuse a non-empty directory unless
    resuming."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} exists and is not a directory")
    if resume:
        if not (out / FILES["config"]).is_file():
            raise RunDirError(f"{out} is not a run directory (no {FILES['config']})")
        return out
    check_new_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / FILES["config"], dump_config(cfg))
    return out


@contextlib.contextmanager
def locked_run_dir(cfg: ExperimentConfig, out_dir, *, resume: bool = False, command: str = ""):
    """:func:`prepare_run_dir` under the directory's lock (``DIR/.lock``, held until the block
    ends): a second process writing the same directory gets a :class:`~ude.errors.RunLocked`
    (a :class:`~ude.errors.RunDirError`) naming the holder."""
    out = Path(out_dir)
    if resume and not (out / FILES["config"]).is_file():
        raise RunDirError(f"{out} is not a run directory (no {FILES['config']})")
    if not resume:
        check_new_dir(out)
        out.mkdir(parents=True, exist_ok=True)
    with lock.acquire(out, command=command):
        if resume:  # temporary files of a writer that was killed mid-write (we hold the lock)
            for tmp in [*out.glob(".*.tmp"), *(out / FILES["checkpoints"]).glob(".*.tmp")]:
                tmp.unlink(missing_ok=True)
        yield prepare_run_dir(cfg, out, resume=resume)


def load_run(out_dir) -> ExperimentConfig:
    """The resolved config of a run directory."""
    out = Path(out_dir)
    if not (out / FILES["config"]).is_file():
        raise RunDirError(f"{out} is not a run directory (no {FILES['config']})")
    return load_config(out / FILES["config"])
