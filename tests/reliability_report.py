"""Counts of the reliability tests (broken inputs tried, faults injected, runs that survived).

Each test module adds to a module-level :data:`COUNTS` through :func:`count`; :func:`flush` (called
at module teardown) prints them and, when ``UDE_RELIABILITY_JSON`` names a file, merges them into
it (what docs/reliability.md quotes: ``UDE_RELIABILITY_JSON=benchmarks/results/reliability.json
pytest tests/test_fuzz.py tests/test_reliability.py tests/test_kill_resume.py``).
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import os
import platform
from pathlib import Path

COUNTS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def count(module: str, key: str, n: int = 1) -> None:
    COUNTS[module][key] += n


def flush(module: str) -> None:
    counts = dict(sorted(COUNTS.get(module, {}).items()))
    print(f"\n[reliability] {module}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    path = os.environ.get("UDE_RELIABILITY_JSON")
    if not path:
        return
    p = Path(path)
    try:
        data = json.loads(p.read_text()) if p.is_file() else {}
    except (OSError, json.JSONDecodeError):
        data = {}
    data[module] = {
        "counts": counts,
        "when": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, p)
