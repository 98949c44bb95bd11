"""ude.registry: the names a config may use agree with the classes and callables they name, and
the config package needs nothing further down the pipeline to check them."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest

from ude import registry
from ude.nn import ACTIVATIONS
from ude.physics import SYSTEMS as PHYSICS_SYSTEMS, NoPhysics
from ude.registry import SYSTEMS, SystemSpec
from ude.solve import ADJOINTS, SOLVERS

ROOT = Path(__file__).resolve().parent.parent / "ude"
# what the config package and the registry may import besides the standard library
# the config checks equations with ude.equations' parser: SymPy only
ALLOWED = {
    "config": {"pydantic", "yaml", "sympy", "ude.errors", "ude.registry", "ude.config"}
    | {"ude.equations.parse"},
    "equations": {"sympy", "ude.registry", "ude.equations.parse"},
    "registry": set(),
}
FILES = (
    sorted(ROOT.joinpath("config").glob("*.py"))
    + [ROOT / "equations" / "parse.py", ROOT / "equations" / "__init__.py"]
    + [ROOT / "registry.py"]
)


def _imported(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path`` (a file under the package
    directory ``root``), relative ones resolved."""
    package = list(path.relative_to(root.parent).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1])
            if node.module is None:  # from .. import x: the names are modules
                out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            else:
                out.append((node.lineno, f"{base}.{node.module}"))
    return out


def _allowed(name: str, allowed: set[str]) -> bool:
    top = name.split(".")[0]
    return top in sys.stdlib_module_names or any(
        name == a or name.startswith(a + ".") for a in allowed
    )


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_config_and_registry_import_no_jax(path):
    kind = "registry" if path.name == "registry.py" else path.parent.name
    allowed = ALLOWED[kind]
    wrong = [
        f"line {line}: imports {name}"
        for line, name in _imported(path)
        if not _allowed(name, allowed)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_import_check_sees_a_violation(tmp_path):
    # the check itself: a config module importing physics (or numpy) must be reported
    bad = tmp_path / "ude" / "config" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "from ..physics import SYSTEMS\nfrom .schema import X\nfrom .. import errors\n"
        "import numpy as np\nimport re\n"
    )
    found = [name for _, name in _imported(bad, tmp_path / "ude")]
    assert found == ["ude.physics", "ude.config.schema", "ude.errors", "numpy", "re"]
    assert [_allowed(n, ALLOWED["config"]) for n in found] == [False, True, True, False, True]


def test_registry_imports_standing_alone():
    # loaded by path in a fresh interpreter, the registry brings in no third-party module
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('registry', sys.argv[1])\n"
        "m = sys.modules['registry'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(m)\n"
        "assert m.SYSTEMS['sir'].state_names == ('S', 'I', 'R')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in "
        "('jax', 'equinox', 'numpy', 'diffrax', 'pydantic', 'yaml')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "registry.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


# ---- registry <-> the classes and callables it names -----------------------------------------
def test_systems_match_the_physics_classes():
    assert list(PHYSICS_SYSTEMS) == list(SYSTEMS)
    for name, cls in PHYSICS_SYSTEMS.items():
        spec = SYSTEMS[name]
        assert spec.name == name
        assert cls.param_names == spec.param_names, name
        assert cls.term_names == spec.term_names, name
        assert cls.term_formulas == dict(spec.term_formulas), name
        assert type(cls.term_formulas) is dict  # a plain dict, as before the registry
        if name != "none":
            assert cls.state_names == spec.state_names, name
    assert NoPhysics().state_names == SYSTEMS["none"].state_names


@pytest.mark.parametrize("name", [n for n in SYSTEMS if n != "none"])
def test_specs_describe_what_the_systems_compute(name):
    spec = SYSTEMS[name]
    cls = PHYSICS_SYSTEMS[name]
    phys = cls(*[1.0] * len(spec.param_names))
    terms = phys.terms(0.0, jnp.asarray([0.5, 0.3, 0.2][: len(spec.state_names)]))
    assert tuple(terms) == spec.term_names
    for term, formula in spec.term_formulas.items():
        state = formula.split(":", 1)[0].strip()
        assert state in spec.state_names, (term, formula)
        # the term's formula names the state it contributes to: that entry is not zero
        assert terms[term][spec.state_names.index(state)] != 0, (term, formula)


def test_solver_adjoint_and_activation_names_match_their_callables():
    assert tuple(SOLVERS) == registry.SOLVER_NAMES
    assert tuple(ADJOINTS) == registry.ADJOINT_NAMES
    assert tuple(ACTIVATIONS) == registry.ACTIVATION_NAMES


def test_specs_are_read_only():
    spec = SYSTEMS["lotka_volterra"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"
    with pytest.raises(TypeError):
        spec.term_formulas["growth"] = "x: 0"
    with pytest.raises(TypeError):
        SYSTEMS["other"] = spec
    assert hash(spec) == hash(SYSTEMS["lotka_volterra"])


def test_a_spec_lists_each_term_once_with_its_formula():
    with pytest.raises(ValueError, match="term_formulas"):
        SystemSpec("bad", ("x",), ("a",), ("growth", "decay"), {"growth": "x: a*x"})
