"""The published numbers are the code's: README.md's results section and REPRODUCING.md must be
what ``experiments/report.py`` writes from the stored results JSON files (``--check``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments import report  # noqa: E402


def test_published_tables_match_the_results():
    assert report.check() == []


def test_an_edited_row_is_caught_and_regeneration_fixes_it(tmp_path):
    readme, target = tmp_path / "README.md", tmp_path / "REPRODUCING.md"
    shutil.copy(ROOT / "README.md", readme)
    target.write_text(report.build(report.OUT, tmp_path))
    assert report.check(target=target, readme=readme) == []
    text = readme.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `lotka_volterra` |"))
    cells = row.split(" | ")
    cells[1] = "1.198"  # a stale final loss
    readme.write_text(text.replace(row, " | ".join(cells)))
    stale = report.check(target=target, readme=readme)
    assert len(stale) == 1 and "-" + " | ".join(cells) in stale[0]
    report.update_readme(readme)
    assert report.check(target=target, readme=readme) == []


def test_the_command_exits_1_when_stale(tmp_path):
    ok = subprocess.run(
        [sys.executable, "experiments/report.py", "--check"], cwd=ROOT, capture_output=True
    )
    assert ok.returncode == 0, ok.stdout.decode()
