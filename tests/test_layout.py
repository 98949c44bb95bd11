"""The package's layout (DESIGN.md): imports point one way, up the pipeline, and files stay small.

Read from the source with ``ast`` (nothing is imported), so a violation names the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "ude"

# Each top-level unit of ude/ and its place in the pipeline: a module may import units of a lower
# rank and its own unit, never one further down. `solvers` (ude's own diffrax solvers) sits above
# `solve`, which builds solver options from it; `parallel` (device meshes) above `train`, whose
# ensembles it shards.
ORDER = [
    ("_types", "errors"),
    ("_io", "registry", "compile_cache", "interrupt"),
    ("equations",),
    ("config",),
    ("physics",),
    ("data",),
    ("nn",),
    ("model",),
    ("solvers",),
    ("solve",),
    ("parallel",),
    ("train",),
    ("discovery",),
    ("uncertainty",),
    ("evaluate", "quality"),
    ("plots",),
    ("plots_experiments",),
    ("pipeline",),
    ("cli",),
]
RANK = {unit: i for i, units in enumerate(ORDER) for unit in units}
MAX_LINES = 500


def _modules():
    return sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT)


def _unit(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path):
    """``(line, absolute module name)`` of every ``ude`` import in ``path``."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    package = list(rel.parts[:-1]) if path.name != "__init__.py" else list(rel.parts[:-1])
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x: the names are modules of `base`
                    for alias in node.names:
                        yield node.lineno, f"{name}.{alias.name}"
                    continue
            else:
                name = node.module or ""
            if name == "ude" or name.startswith("ude."):
                yield node.lineno, name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ude."):
                    yield node.lineno, alias.name


def test_every_unit_has_a_place():
    units = {_unit(p) for p in _modules()}
    assert not units - set(RANK), f"add these to ORDER in {__file__}: {sorted(units - set(RANK))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_point_up_the_pipeline(path):
    own = _unit(path)
    wrong = []
    for line, name in _imports(path):
        parts = name.split(".")
        if len(parts) < 2:
            wrong.append(f"line {line}: imports the top-level package ude (import the module)")
            continue
        unit = parts[1]
        if unit != own and RANK.get(unit, -1) >= RANK[own]:
            wrong.append(f"line {line}: {own} imports {name}, which is further down the pipeline")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_files_hold_one_concept(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{n} lines: more than one concept lives here; split it"


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    # the graph check itself: a physics module importing the trainer must be reported
    bad = tmp_path / "ude" / "physics" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from ..train import fit\nfrom .base import AbstractPhysics\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path / "ude")
    with pytest.raises(AssertionError, match="physics imports ude.train"):
        test_imports_point_up_the_pipeline(bad)
