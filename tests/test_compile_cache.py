"""ude.compile_cache: where the persistent compilation cache goes, and that a second process loads
its programs from it (run in subprocesses: the cache is process-wide JAX configuration)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from ude.compile_cache import ENV, default_dir

SCRIPT = """
import json, sys, time
from ude.compile_cache import enable
path = enable(min_compile_seconds=0.0)
import jax, jax.numpy as jnp
from jax._src import monitoring
hits = []
monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if "cache_hits" in name else None
)
f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T + 1.0)
f(jnp.ones((8, 8))).block_until_ready()
print(json.dumps({"dir": None if path is None else str(path), "hits": len(hits)}))
"""


def _run(env_value):
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if env_value is not None:
        env[ENV] = env_value
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path / "c"))
    assert default_dir() == tmp_path / "c"
    for off in ("0", "off", ""):
        monkeypatch.setenv(ENV, off)
        assert default_dir() is None
    monkeypatch.delenv(ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_dir() == tmp_path / "ude" / "jax"


def test_a_second_process_loads_the_compiled_program(tmp_path):
    cache = tmp_path / "cache"
    first = _run(str(cache))
    assert first["dir"] == str(cache) and first["hits"] == 0
    assert any(p.is_file() for p in Path(cache).rglob("*"))  # the program was written
    second = _run(str(cache))
    assert second["hits"] >= 1  # ... and read back instead of compiled
    assert _run("0")["dir"] is None
