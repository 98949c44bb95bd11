"""Atomic writes keep the permissions an ordinary write would give (a run's files are readable by
colleagues as the user's umask allows, not 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ude import cli
from ude._io import atomic_write_bytes, atomic_write_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_gets_the_umask_mode(tmp_path, umask_022):
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert _mode(tmp_path / "a.bin") == 0o644
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what an ordinary open gives
    atomic_write_text(tmp_path / "b.txt", "x")
    assert _mode(tmp_path / "b.txt") == _mode(plain)


def test_an_existing_file_keeps_its_mode(tmp_path, umask_022):
    p = tmp_path / "c.txt"
    p.write_text("old")
    os.chmod(p, 0o640)
    atomic_write_text(p, "new")
    assert p.read_text() == "new" and _mode(p) == 0o640
    # no temporary file is left behind
    assert [q.name for q in tmp_path.iterdir()] == ["c.txt"]


def test_run_files_are_readable_by_others(tmp_path, umask_022):
    out = tmp_path / "run"
    code = cli.main(
        ["simulate", str(ROOT / "configs" / "lotka_volterra.yaml"), "--out", str(out), "--quiet"]
    )
    assert code == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert _mode(p) & 0o044 == 0o044, (p, oct(_mode(p)))
