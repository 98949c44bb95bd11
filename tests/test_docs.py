"""Executed documentation: the ``>>>`` examples in ude's docstrings (doctest) and the ```python
blocks of README.md and docs/*.md, so that what the docs show keeps working.

Both are found by reading the files when the tests are collected, so an example added, edited or
removed is picked up without touching this file. A block is skipped, with the reason shown in the
test report, when it is a fragment (a ``# ...`` line elides code) or needs more devices than the
tests have; blocks that train or discover are marked slow.
"""

import contextlib
import doctest
import importlib
import io
import re
from pathlib import Path

import jax
import pytest
import yaml

from ude.config import validate_config

ROOT = Path(__file__).resolve().parents[1]

# docstrings whose examples are executed: if one of these loses its >>> example, say so
KEY_MODULES = (
    "ude._io",
    "ude.model",
    "ude.nn",
    "ude.solve",
    "ude.physics.parameter",
    "ude.physics.systems",
    "ude.physics.equations",
    "ude.physics.wrapped",
    "ude.equations.parse",
)


def _doctest_modules() -> list[str]:
    """ude's modules whose source has a ``>>>`` line (read, not imported, at collection)."""
    names = []
    for path in sorted((ROOT / "ude").rglob("*.py")):
        if re.search(r"^\s*>>> ", path.read_text(encoding="utf-8"), re.M):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_key_modules_have_docstring_examples():
    missing = sorted(set(KEY_MODULES) - set(_doctest_modules()))
    assert not missing, f"no >>> example left in {missing}"


@pytest.mark.parametrize("module", _doctest_modules())
def test_docstring_examples(module):
    mod = importlib.import_module(module)
    tests, seen = [], set()
    # a wrapper (eqx.filter_jit(solve)) carries its function's docstring (doctest finds no line
    # number for it): run each docstring once, where it is written
    for test in sorted(doctest.DocTestFinder().find(mod, module), key=lambda t: t.lineno is None):
        if test.examples and test.docstring not in seen:
            seen.add(test.docstring)
            tests.append(test)
    assert tests, f"{module}: its >>> lines are not in any docstring doctest finds"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    for test in tests:
        runner.run(test, out=report.write)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, (
        f"{module}: {results.failed} of {results.attempted} examples failed\n{report.getvalue()}"
    )


_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```", re.S | re.M)
# the calls that make a block a training run of tens of seconds or more
_LONG = re.compile(r"\b(fit|fit_ensemble|discover|select_by_simulation|run_experiment|refit)\(")


def _skip_reason(code: str) -> str | None:
    if re.search(r"^\s*# \.\.\.", code, re.M):
        return "a fragment: its '# ...' line elides code it needs"
    need = max((int(n) for n in re.findall(r"make_mesh\(members=(\d+)", code)), default=1)
    if need > jax.device_count():
        return (
            f"needs {need} devices (make_mesh(members={need})), the tests have {jax.device_count()}"
        )
    return None


def _doc_blocks():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for md in files:
        if not md.exists():
            continue
        text = md.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            code = match.group(1)
            marks = []
            if reason := _skip_reason(code):
                marks.append(pytest.mark.skip(reason=reason))
            elif _LONG.search(code):
                marks.append(pytest.mark.slow)
            name = f"{md.relative_to(ROOT)}:{line}"
            # padded so that a traceback's line numbers are the file's
            yield pytest.param(name, "\n" * line + code, id=name, marks=marks)


@pytest.mark.parametrize("name, code", list(_doc_blocks()))
def test_doc_code_block(name, code, tmp_path, monkeypatch):
    """Runs in a fresh namespace, in a temporary directory (a block may write files)."""
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, name.rsplit(":", 1)[0], "exec"), {"__name__": "__doc_block__"})


_YAML_FENCE = re.compile(r"^```yaml[ \t]*\n(.*?)^```", re.S | re.M)


def _config_blocks():
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if not md.exists():
            continue
        text = md.read_text(encoding="utf-8")
        for match in _YAML_FENCE.finditer(text):
            raw = yaml.safe_load(match.group(1))
            if isinstance(raw, dict) and "data" in raw:  # a whole config, not a fragment
                line = text.count("\n", 0, match.start()) + 1
                yield pytest.param(raw, id=f"{md.relative_to(ROOT)}:{line}")


@pytest.mark.parametrize("raw", list(_config_blocks()))
def test_doc_config_block_validates(raw):
    """A whole config shown in the docs is a valid config."""
    validate_config(raw)
