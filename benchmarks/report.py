"""Write the benchmark tables into the READMEs from ``benchmarks/results/*.json``.

    python benchmarks/report.py

Replaces the text between ``<!-- bench:start … -->`` and ``<!-- bench:end -->`` in
``benchmarks/README.md`` (every suite's table) and in the top-level ``README.md`` (the issue-7
targets). Numbers are read from the JSON files the suites wrote; nothing is typed in.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
START, END = "<!-- bench:start (written by benchmarks/report.py) -->", "<!-- bench:end -->"


def _load(name):
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    return None if "error" in d or "skipped" in d else d


def _f(x, digits=3):
    return "—" if x is None else f"{x:.{digits}g}"


def _machine(d) -> str:
    m = d["machine"]
    load = ", ".join(f"{x:.1f}" for x in m["load_average"]) if m.get("load_average") else "?"
    return (
        f"{m['cpu']}, {m['cores']} cores, jax {m['jax']}, diffrax {m['diffrax']}, equinox "
        f"{m['equinox']}, optax {m['optax']}; {m['date'][:10]}, load average {load}"
    )


def _yes(ok: bool) -> str:
    return "✓" if ok else "✗"


def targets() -> str:
    """The issue-7 targets table (top-level README)."""
    step, comp, e2e = _load("step"), _load("compile"), _load("e2e")
    rows = ["| measure | result | target |", "|---|---|---|"]
    if step:
        r = step["ratios"]
        for key, label in (
            ("ude/diffrax fused", "fused training step (100 per `lax.scan`)"),
            ("ude/diffrax per-step", "one step per call (`ude.train.Stepper`)"),
        ):
            v = r[key]["paired_cpu"]
            rows.append(
                f"| `ude` / hand-written diffrax + equinox + optax, {label} | {v:.2f} | "
                f"≤ 1.05 {_yes(v <= 1.05)} |"
            )
        for key, label in (
            ("ude/same-config fused", "fused"),
            ("ude/same-config per-step", "per step"),
        ):
            v = r[key]["paired_cpu"]
            rows.append(
                f"| `ude` / the same by hand *with ude's solver configuration*, {label} | "
                f"{v:.2f} | ≤ 1.05 {_yes(v <= 1.05)} |"
            )
        v, d = r["ude fused/floor"]["paired_cpu"], r["diffrax fused/floor"]["paired_cpu"]
        rows.append(
            f"| `ude` fused step / fixed-step Tsit5 floor (hand-written diffrax: {d:.2f}) | "
            f"{v:.2f} | ≤ 2.0 {_yes(v <= 2.0)} |"
        )
    if comp:
        v = comp["first_call_s"]
        rows.append(
            f"| first call of a 100-step training chunk (trace {comp['lower_s']:.2f} s + XLA "
            f"{comp['compile_s']:.2f} s + run), fresh process | {v:.2f} s | "
            f"≤ 3 s {_yes(v <= 3.0)} |"
        )
        n = sum(comp["recompiles"].values())
        rows.append(
            "| recompiles when lr, tolerance, noise level, weights or stage length change | "
            f"{n} | 0 {_yes(n == 0)} |"
        )
    if e2e:
        c, w = e2e["wall_s"], e2e["warm_wall_s"]
        rows.append(
            f"| `ude run configs/lotka_volterra.yaml` end to end (cold / warm compilation cache) | "
            f"{c:.0f} s / {w:.0f} s | ≤ 60 s {_yes(c <= 60)} |"
        )
    torch = _load("torch")
    if torch:
        t = torch["timings"]
        rows.append(
            f"| torchdiffeq `odeint` (dopri5, backprop) / `ude` fused, same problem | "
            f"{t['odeint']['wall_ms'] / t['ude_fused']['wall_ms']:.0f}× slower | — |"
        )
    src = step or comp
    tail = (
        f"\n\nMeasured on {_machine(src)} (`benchmarks/results/{{step,compile,e2e,torch}}.json`)."
        if src
        else ""
    )
    return "\n".join(rows) + tail


def _table(d) -> str:
    cols = [c for c in d["columns"] if any(c in r for r in d["rows"])]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in d["rows"]:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(_f(v) if isinstance(v, float) else ("" if v is None else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def suites() -> str:
    """Every suite's table with its machine line (benchmarks/README.md)."""
    out = []
    for name in ("step", "compile", "precision", "adjoint", "e2e", "torch"):
        d = _load(name)
        if d is None:
            out.append(
                f"### {name}\n\nno result (not run, skipped or failed: `results/{name}.json`)."
            )
            continue
        extra = ""
        if name == "step":
            p = d["problem"]
            extra = (
                f"\n\nAdaptive steps of the solve at the initial weights: {p['adaptive_steps']} "
                f"(rejected {p['rejected_steps']}); diffrax's own Tsit5: "
                f"{p.get('diffrax_tsit5_steps', '?')} "
                f"(rejected {p.get('diffrax_tsit5_rejected', '?')}) — the same method, "
                "float32 rounding "
                "differs. Ratios are medians of paired per-repeat CPU-time ratios."
            )
        if name == "torch":
            extra = f"\n\ntorch {d['torch']}, torchdiffeq {d['torchdiffeq']} (one thread)."
        out.append(
            f"### {name} ({d['mode']})\n\n{_machine(d)}, {d['suite_seconds']:.0f} s.\n\n"
            f"{_table(d)}{extra}"
        )
    return "\n\n".join(out)


def _replace(path: Path, text: str) -> None:
    src = path.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(src):
        sys.exit(f"{path}: no {START} … {END} markers")
    path.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", src))


def main() -> int:
    _replace(HERE / "README.md", suites())
    _replace(HERE.parent / "README.md", targets())
    print("wrote benchmarks/README.md and README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
