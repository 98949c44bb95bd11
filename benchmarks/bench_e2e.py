"""``e2e``: wall time of the paper's scenario 1, ``ude run configs/lotka_volterra.yaml``, as a
subprocess (data → fit → discovery → refit → evaluation → figures, into a temporary run directory).
Full mode only; skipped with a note while the CLI or the config is missing.
"""

from __future__ import annotations

import importlib.util
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
        return {"skipped": f"{CONFIG.relative_to(ROOT)} does not exist yet", "rows": [], "columns": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "ude.cli", "run", str(CONFIG), "--quiet", "--out", str(out)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t
        files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) if out.exists() else []
    rows = [{"what": "ude run configs/lotka_volterra.yaml, s", "value": wall},
            {"what": "exit code", "value": proc.returncode},
            {"what": "files written", "value": len(files)}]
    res = {"command": " ".join(cmd[1:]), "wall_s": wall, "returncode": proc.returncode,
           "files": files, "stderr_tail": proc.stderr[-2000:], "rows": rows, "columns": ["what", "value"]}
    if proc.returncode != 0:
        res["error"] = f"ude run exited with {proc.returncode}: {proc.stderr[-300:]}"
    return res
