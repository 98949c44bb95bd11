"""``e2e``: wall time of the paper's scenario 1, ``ude run configs/lotka_volterra.yaml``, as a
subprocess (data → fit → discovery → refit → evaluation → figures, into a temporary run directory),
twice: with an empty compilation cache (``cold``: every program compiled) and again with the cache
the first run filled (``warm``: what a repeated run costs; ``ude.compile_cache``).
Full mode only; skipped with a note while the CLI or the config is missing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

NAME = "e2e"
FULL_ONLY = True
CONFIG = ROOT / "configs" / "lotka_volterra.yaml"


def run(mode: str) -> dict:
    if importlib.util.find_spec("ude.cli") is None:
        return {"skipped": "ude.cli does not exist yet", "rows": [], "columns": []}
    if not CONFIG.exists():
        return {
            "skipped": f"{CONFIG.relative_to(ROOT)} does not exist yet",
            "rows": [],
            "columns": [],
        }
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "UDE_COMPILATION_CACHE": str(Path(tmp) / "cache")}
        for kind in ("cold", "warm"):
            out = Path(tmp) / kind
            cmd = [
                sys.executable,
                "-m",
                "ude.cli",
                "run",
                str(CONFIG),
                "--quiet",
                "--out",
                str(out),
            ]
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
            wall = time.perf_counter() - t
            files = (
                sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
                if out.exists()
                else []
            )
            runs[kind] = {
                "wall_s": wall,
                "returncode": proc.returncode,
                "files": files,
                "stderr_tail": proc.stderr[-2000:],
            }
    rows = [
        {
            "what": f"ude run configs/lotka_volterra.yaml, {k} compilation cache, s",
            "value": r["wall_s"],
        }
        for k, r in runs.items()
    ]
    rows += [
        {"what": "exit codes", "value": " ".join(str(r["returncode"]) for r in runs.values())},
        {"what": "files written", "value": len(runs["cold"]["files"])},
    ]
    res = {
        "command": " ".join(cmd[1:-2]),
        "wall_s": runs["cold"]["wall_s"],
        "warm_wall_s": runs["warm"]["wall_s"],
        "runs": runs,
        "rows": rows,
        "columns": ["what", "value"],
    }
    bad = {k: r for k, r in runs.items() if r["returncode"] != 0}
    if bad:
        k, r = next(iter(bad.items()))
        res["error"] = f"ude run ({k}) exited with {r['returncode']}: {r['stderr_tail'][-300:]}"
    return res
