"""Run the benchmark suites: ``python benchmarks/run.py [--quick|--full] [--only NAME ...]``.

Each suite runs in its own Python process (fresh compilation caches, its own peak memory), writes
``benchmarks/results/<name>.json`` with the machine's description, and its table is printed here.
Timings exclude warm-up (compilation is reported separately), are medians of repeats run
round-robin, and ratios are measured in the same process. ``cpu`` columns are process CPU time,
which other load on a shared machine disturbs less than wall time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SUITES = ["step", "compile", "precision", "adjoint", "e2e", "torch"]


def _child(name: str, mode: str) -> int:
    import common

    mod = importlib.import_module(f"bench_{name}")
    t = time.perf_counter()
    try:
        payload = mod.run(mode)
    except Exception as e:  # recorded, so one broken suite does not hide the others
        import traceback

        payload = {
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
            "rows": [],
            "columns": [],
        }
    import resource

    payload = {
        "suite": name,
        "mode": mode,
        "machine": common.machine(),
        "suite_seconds": time.perf_counter() - t,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **payload,
    }
    common.write(name, payload)
    return 0 if "error" not in payload else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--quick", action="store_true", help="fewer repeats, skip full-only suites (default)"
    )
    g.add_argument("--full", action="store_true", help="all suites, more repeats")
    p.add_argument("--only", nargs="+", choices=SUITES, help="run only these suites")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    mode = "full" if args.full else "quick"
    if args.child:
        return _child(args.child, mode)

    import common

    names = args.only or SUITES
    status = 0
    t0 = time.perf_counter()
    for name in names:
        mod = importlib.import_module(f"bench_{name}")
        if mode == "quick" and getattr(mod, "FULL_ONLY", False) and not args.only:
            print(f"\n## {name}: full mode only (skipped)")
            continue
        print(f"\n## {name} ({mode})", flush=True)
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(
                [str(HERE), str(common.ROOT), os.environ.get("PYTHONPATH", "")]
            ),
        )
        rc = subprocess.call(
            [sys.executable, str(HERE / "run.py"), f"--{mode}", "--child", name], env=env
        )
        path = common.RESULTS / f"{name}.json"
        if not path.exists():
            print(f"{name}: no result written (exit {rc})")
            status = 1
            continue
        res = json.loads(path.read_text())
        if "error" in res:
            print(f"{name}: ERROR {res['error']}")
            status = 1
        if res.get("skipped"):
            print(f"{name}: skipped: {res['skipped']}")
        if res.get("rows"):
            print(common.table(res["rows"], res["columns"]))
        for k, v in (res.get("summary") or {}).items():
            print(f"  {k}: {v}")
        for k, v in (res.get("targets_cpu") or {}).items():
            print(f"  target {k}: {'met' if v else 'NOT met'}")
        print(
            f"  ({res.get('suite_seconds', 0):.0f} s, peak RSS {res.get('max_rss_mb', 0):.0f} MB; "
            f"{res['machine']['cpu']}, {res['machine']['cores']} cores, "
            f"load {res['machine']['load_average']})"
        )
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; results in {common.RESULTS}")
    return status


if __name__ == "__main__":
    sys.exit(main())
