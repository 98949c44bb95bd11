"""The ``ude`` command: run experiments from YAML configs.

    ude run CONFIG [--set KEY=VALUE ...] [--out DIR] [--devices N] [--quiet] [--debug]
    ude resume DIR [--devices N] [--redo STEP]   continue an interrupted run
    ude simulate CONFIG       the data only
    ude discover DIR          redo discovery, refit, evaluation and figures of a fitted run
    ude figures DIR           redraw the figures of a finished run
    ude configs               list the shipped configs

Exit codes: 0 success, 2 a usage, config or data error (nothing is written), 1 a run that failed
(training diverged: every step of a stage rejected, or a non-finite final loss) or was interrupted.
SIGINT (Ctrl-C) and SIGTERM during a fit write a checkpoint after the current chunk of steps and
exit 1 with a hint to ``ude resume DIR``; a second signal stops at once. A run directory is locked
(``DIR/.lock``) while a command writes it.
``--devices N`` trains the ensemble (``parallel.ensemble`` members) split over N devices
(``parallel.devices``); jax must see N devices. When jax has not started its backends yet (the
console script), ``--devices N`` also asks jax for N host (CPU) devices (``jax_num_cpu_devices``),
so a CPU-only machine splits the ensemble over its cores; accelerators are unaffected.
Commands that train or refit keep JAX's compiled programs on disk (``ude.compile_cache``:
``~/.cache/ude/jax``, or ``$UDE_COMPILATION_CACHE``; ``UDE_COMPILATION_CACHE=0`` switches it
off), so a repeated run skips XLA compilation.
This is the only module that prints or reads ``sys.argv``, and the only place that turns errors
into exit codes (:func:`ude.errors.exit_code`); it switches JAX to float64 before any work when
the config asks for it (and whenever data are simulated: the ground truth is float64).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from .errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError, FitFailed, exit_code
from .pipeline.summary import summary

PACKAGE_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Quiet:
    """Progress messages to stderr unless quiet."""

    def __init__(self, quiet: bool):
        import time

        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        import time

        if not self.quiet:
            _err(f"[ude {time.perf_counter() - self.t0:6.1f}s] {msg}")


def _enable_x64(cfg) -> None:
    import jax

    if cfg.solver.dtype == "float64" or cfg.data.file is None:
        jax.config.update("jax_enable_x64", True)


def _check_devices(cfg, command: str) -> int | None:
    """EXIT_USAGE (after printing why) when ``parallel.devices`` cannot be used
    (:func:`ude.pipeline.build_mesh`: jax sees fewer devices, or the adjoint cannot be sharded)."""
    from . import pipeline

    try:
        pipeline.build_mesh(cfg)
    except ValueError as e:
        _err(f"ude {command}: error: {e}")
        return EXIT_USAGE
    return None


def _with_devices(load, devices: int | None):
    """``load(extra overrides)`` with ``parallel.devices`` set from ``--devices``; a config whose
    ensemble is smaller gets a hint to enlarge it."""
    if devices is None:
        return load([])
    try:
        return load([f"parallel.devices={devices}"])
    except ConfigError as e:
        msgs = [
            m
            + (
                f" (e.g. --set parallel.ensemble={devices})"
                if m.startswith("parallel.devices:")
                else ""
            )
            for m in e.messages
        ]
        raise ConfigError(msgs, e.source) from None


def _find_config(name: str) -> Path:
    p = Path(name)
    if p.is_file() or p.suffix in (".yaml", ".yml") or "/" in name:
        return p
    for root in (Path("configs"), PACKAGE_CONFIGS):
        for ext in (".yaml", ".yml"):
            if (root / f"{name}{ext}").is_file():
                return root / f"{name}{ext}"
    return p


def _load(args):
    from .config import load_config

    devices = getattr(args, "devices", None)
    return _with_devices(
        lambda extra: load_config(_find_config(args.config), [*(args.set or ()), *extra]), devices
    )


def graceful_signals():
    from .interrupt import graceful_signals as g

    return g()


def _finished(args, metrics: dict) -> int:
    """Print the run's summary, then the quality gate's warning; its exit status."""
    from .quality import gate

    print(summary(metrics))
    code, warning = gate(metrics, allow=getattr(args, "allow_underfit", False))
    if warning:
        _err(warning)
    return code


def cmd_run(args) -> int:
    from . import pipeline

    cfg = _load(args)
    _enable_x64(cfg)
    if _check_devices(cfg, "run") is not None:
        return EXIT_USAGE
    out = Path(args.out) if args.out else pipeline.default_run_dir(cfg)
    args._out = out
    log = _Quiet(args.quiet)
    log(f"run {cfg.name} → {out}")
    with graceful_signals() as args._stop:
        metrics = pipeline.run_experiment(
            cfg, out, verbose=not args.quiet, log=log, stop=args._stop
        )
    return _finished(args, metrics)


def cmd_resume(args) -> int:
    from . import pipeline
    from .config import load_config

    out = Path(args.dir)
    args._out = out
    cfg = pipeline.load_run(out)
    redo = getattr(args, "redo", None)
    if redo is None:
        from .pipeline import lock

        with lock.acquire(out, command="resume"):  # a directory in use is refused, finished or not
            finished = pipeline.run_is_finished(out)
    if redo is None and finished:
        print(
            f"ude resume: {out} is a finished run (metrics.json: status ok); nothing to resume, "
            "nothing changed. To redo a step: ude resume DIR --redo evaluate|discover|figures"
        )
        return EXIT_OK
    if redo == "figures":
        return cmd_figures(args)
    if redo == "discover":
        return cmd_discover(args)
    if args.devices is not None:  # for this process only: the results do not depend on it
        cfg = _with_devices(
            lambda extra: load_config(out / pipeline.FILES["config"], extra), args.devices
        )
    _enable_x64(cfg)
    if _check_devices(cfg, "resume") is not None:
        return EXIT_USAGE
    log = _Quiet(args.quiet)
    log(f"resume {cfg.name} in {out}")
    with graceful_signals() as args._stop:
        metrics = pipeline.run_experiment(
            cfg, out, verbose=not args.quiet, resume=True, log=log, stop=args._stop
        )
    return _finished(args, metrics)


def cmd_simulate(args) -> int:
    from . import pipeline

    cfg = _load(args)
    _enable_x64(cfg)
    out = Path(args.out) if args.out else pipeline.default_run_dir(cfg)
    d = pipeline.run_simulate(cfg, out, log=_Quiet(args.quiet))
    t0, t1 = d.span()
    what = "experiment(s)" if d.per_experiment_times else "trajectory(ies)"
    print(
        f"wrote {out}/data.npz: {d.n_traj} {what}, {sum(d.lengths)} times "
        f"[{t0:g}, {t1:g}], states {', '.join(d.state_names)}, {d.n_observed()} observed values"
    )
    if args.csv:
        from .data import write_experiments

        header = {
            "written by": f"ude {_version()} simulate {args.config} --csv {args.csv}",
            "config": cfg.name,
            "truth": cfg.truth.equations or cfg.truth.system,
            "parameters": cfg.truth.parameters,
            "noise": cfg.data.noise.model_dump(exclude_none=True),
            "seed": cfg.data.seed,
            "experiments": list(d.experiment_names),
        }
        if cfg.data.experiments is not None:
            header["inputs"] = {e.name: e.inputs for e in cfg.data.experiments}
        write_experiments(d, args.csv, header=header)
        print(
            f"wrote {args.csv}: {d.n_traj} experiment(s) in the long format (read it back with "
            "data.file: {path, experiment: experiment, time: time, states: [...]})"
        )
    return EXIT_OK


def cmd_discover(args) -> int:
    from . import pipeline

    out = Path(args.dir)
    args._out = out
    _enable_x64(pipeline.load_run(out))
    metrics = pipeline.run_discovery(out, verbose=not args.quiet, log=_Quiet(args.quiet))
    return _finished(args, metrics)


def cmd_figures(args) -> int:
    from . import pipeline

    paths = pipeline.run_figures(Path(args.dir), log=_Quiet(args.quiet))
    print(f"wrote {len(paths)} figure files to {Path(args.dir) / 'figures'}")
    return EXIT_OK


def cmd_configs(args) -> int:
    from .config import describe

    roots = (
        [Path(args.dir)]
        if args.dir
        else [r for r in (Path("configs"), PACKAGE_CONFIGS) if r.is_dir()][:1]
    )
    if not roots or not roots[0].is_dir():
        _err(f"error: no configs directory {roots[0] if roots else 'configs/'}")
        return EXIT_USAGE
    files = sorted(roots[0].glob("*.yaml")) + sorted(roots[0].glob("*.yml"))
    if not files:
        _err(f"error: no *.yaml files in {roots[0]}")
        return EXIT_USAGE
    width = max(len(f.stem) for f in files)
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            text = ""
        print(f"{f.stem:<{width}}  {describe(text) or '(no description)'}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# parser and entry point
# ------------------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", help="no progress messages or bars")
    common.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    common.add_argument(
        "--log-format",
        choices=("auto", "bar", "plain", "none"),
        help="training progress: a bar on a terminal, one line per update in a log file "
        "(default auto: a bar when stderr is a terminal, else plain lines; sets UDE_PROGRESS)",
    )
    common.add_argument(
        "--allow-underfit",
        action="store_true",
        help="exit 0 when the fit is underfit (its final loss above train.underfit_ratio times "
        "the noise floor; it is still reported; also UDE_ALLOW_UNDERFIT=1)",
    )
    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument(
        "--set",
        "-s",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.stages[0].steps=50 "
        "(values are YAML scalars; repeatable)",
    )
    devices = argparse.ArgumentParser(add_help=False)
    devices.add_argument(
        "--devices",
        type=_positive_int,
        metavar="N",
        help="train the ensemble split over N devices (sets parallel.devices; needs "
        "parallel.ensemble >= N; on CPUs, ude asks jax for N host devices itself)",
    )
    overrides.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        help="run directory (default: <output.dir>/<name>-<timestamp>); must not exist or be empty",
    )

    p = argparse.ArgumentParser(
        prog="ude",
        description="Universal differential equations: fit known physics plus a "
        "neural network to data, then recover the missing equations.",
        epilog="Exit codes: 0 success, 1 the run failed or was interrupted (Ctrl-C: a checkpoint "
        "is written; continue with `ude resume DIR`), 2 usage, config or data error, 3 the run "
        "finished but its fit is underfit (--allow-underfit: 0).",
    )
    p.add_argument("--version", action="version", version=f"ude {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser(
        "run",
        parents=[common, overrides, devices],
        help="run a whole experiment",
        description="Run the pipeline of CONFIG: data → fit → discover → refit → "
        "evaluate → figures, into a new run directory.",
    )
    s.add_argument(
        "config", metavar="CONFIG", help="a YAML config (or the name of one in configs/)"
    )
    s.set_defaults(func=cmd_run)

    s = sub.add_parser(
        "resume",
        parents=[common, devices],
        help="continue an interrupted run",
        description="Re-read DIR/config.yaml and continue from the fit's last "
        "checkpoint, then finish the remaining steps.",
    )
    s.add_argument("dir", metavar="DIR", help="a run directory")
    s.add_argument(
        "--redo",
        choices=("evaluate", "discover", "figures"),
        help="on a finished run, redo this step and those after it (without it, resuming a "
        "finished run changes nothing)",
    )
    s.set_defaults(func=cmd_resume)

    s = sub.add_parser(
        "simulate",
        parents=[common, overrides],
        help="generate the data only",
        description="Write config.yaml and the dataset of CONFIG into a run directory.",
    )
    s.add_argument(
        "config", metavar="CONFIG", help="a YAML config (or the name of one in configs/)"
    )
    s.add_argument(
        "--csv",
        metavar="PATH",
        help="also write the data as a long-format CSV/TSV (experiment, time, states, inputs) "
        "with a # provenance header",
    )
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser(
        "discover",
        parents=[common],
        help="redo discovery of a fitted run",
        description="Redo sparse regression, refit, evaluation and figures of the "
        "fitted run in DIR (e.g. after editing the discovery section of "
        "DIR/config.yaml).",
    )
    s.add_argument("dir", metavar="DIR", help="a run directory with a finished fit")
    s.set_defaults(func=cmd_discover)

    s = sub.add_parser(
        "figures",
        parents=[common],
        help="redraw the figures of a run",
        description="Redraw DIR/figures from DIR/results.npz and DIR/history.csv.",
    )
    s.add_argument("dir", metavar="DIR", help="a finished run directory")
    s.set_defaults(func=cmd_figures)

    s = sub.add_parser(
        "configs",
        parents=[common],
        help="list the available configs",
        description="List configs/*.yaml with the first comment line of each.",
    )
    s.add_argument("--dir", metavar="DIR", help="the configs directory (default: ./configs)")
    s.set_defaults(func=cmd_configs)
    return p


def _version() -> str:
    """The installed package's version (the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ude")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from . import __version__

        return __version__


def _force_host_devices(n: int) -> None:
    """Ask jax for ``n`` CPU devices unless its backends already started (then the device count
    is fixed and :func:`_check_devices` reports a shortfall) or ``XLA_FLAGS`` already asks."""
    import jax

    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # the backends have started: the device count is fixed
        pass
    except AttributeError:  # a jax without this option: XLA's flag, read when the backends start
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


def _report(command: str, error: Exception, out, debug: bool) -> None:
    """Say on stderr why ``command`` failed: what to fix for a usage, config or data error, what
    happened for a run that failed (:func:`ude.errors.exit_code` sorts them)."""
    if debug:
        traceback.print_exc()
    if isinstance(error, ConfigError):
        where = f"{error.source}: " if error.source else ""
        if len(error.messages) == 1:
            _err(f"ude {command}: error: {where}{error.messages[0]}")
        else:
            _err(f"ude {command}: error: {where}{len(error.messages)} problems in the config:")
            for m in error.messages:
                _err(f"  {m}")
    elif exit_code(error) == EXIT_USAGE:  # a run directory or data file that cannot be used
        _err(f"ude {command}: error: {error}")
    elif isinstance(error, FitFailed):
        _err(f"ude {command}: the run failed{_in(out)}: {error}")
    else:
        hint = "" if debug else " (--debug shows the traceback)"
        _err(f"ude {command}: the run failed{_in(out)}: {type(error).__name__}: {error}{hint}")


def _in(out) -> str:
    return f" in {out}" if out is not None else ""


def main(argv=None) -> int:
    """Entry point of the ``ude`` console script; returns the exit code (:mod:`ude.errors`)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed by argparse)
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    if getattr(args, "devices", None):
        _force_host_devices(args.devices)
    if getattr(args, "log_format", None):
        os.environ["UDE_PROGRESS"] = args.log_format  # read by ude.train.progress
    if args.command in ("run", "resume", "discover"):
        from .compile_cache import enable

        enable()  # a second run of the same shapes loads its compiled programs (ude.compile_cache)
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        out = getattr(args, "_out", None)
        hint = (
            f"; continue with: ude resume {out}" if out is not None and Path(out).is_dir() else ""
        )
        stop = getattr(args, "_stop", None)
        why = [f"{stop.name} received"] if stop is not None and stop.signum is not None else []
        why += [str(e)] if str(e) and str(e) not in why else []
        _err(f"ude {args.command}: interrupted" + (f" ({'; '.join(why)})" if why else "") + hint)
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 — a failed run is reported, not a traceback
        _report(args.command, e, getattr(args, "_out", None), args.debug)
        return exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
