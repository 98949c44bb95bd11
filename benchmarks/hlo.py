"""Load-independent cost figures from a compiled XLA program's text.

On a CPU, a tiny-state ODE solve is bound by per-operation overhead: every top-level instruction
of a loop body (a fusion, a copy, a dynamic-slice, a dot ...) is one kernel launch per iteration.
Counting them gives a figure that does not move when other processes load the machine.
"""

from __future__ import annotations

import collections
import re

_HEADER = re.compile(r"^(ENTRY )?%?([\w.\-]+) .*\{\s*$")
_OPCODE = re.compile(r" = (?:\([^=]*?\)|\S+) ([a-z][a-z0-9\-]*)\(")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_FREE = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}  # no kernel


def computations(text: str) -> dict[str, list[str]]:
    comps, name = {}, None
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m and not line.startswith(" "):
            name = m.group(2)
            comps[name] = []
        elif name is not None and " = " in line:
            comps[name].append(re.sub(r"/\*.*?\*/", "", line))
    return comps


def launch_counts(text: str) -> dict:
    """Kernel-launching instructions outside fused computations: total and by opcode, plus the
    number of while loops and the largest loop body."""
    comps = computations(text)
    fused = {
        c
        for lines in comps.values()
        for instr in lines
        if _OPCODE.search(instr) and _OPCODE.search(instr).group(1) == "fusion"
        for c in _CALLS.findall(instr)
    }
    by_op, per_comp = collections.Counter(), {}
    for name, lines in comps.items():
        if name in fused:
            continue
        n = 0
        for instr in lines:
            m = _OPCODE.search(instr)
            if m and m.group(1) not in _FREE:
                by_op[m.group(1)] += 1
                n += 1
        per_comp[name] = n
    bodies = {}
    for lines in comps.values():
        for instr in lines:
            m = _OPCODE.search(instr)
            if m and m.group(1) == "while":
                body = re.search(r"body=%?([\w.\-]+)", instr).group(1)
                cond = re.search(r"condition=%?([\w.\-]+)", instr).group(1)
                bodies[body] = _inclusive(body, comps, fused) + _inclusive(cond, comps, fused)
    return {
        "launches": sum(by_op.values()),
        "while_loops": by_op.get("while", 0),
        "by_op": dict(by_op.most_common()),
        "loop_bodies": sorted(bodies.values(), reverse=True),
    }


def _inclusive(name, comps, fused, seen=None):
    """Launches of one iteration of a computation, counting nested conditionals' largest branch
    and nested loop bodies once."""
    seen = set() if seen is None else seen
    if name in seen or name not in comps:
        return 0
    seen.add(name)
    n = 0
    for instr in comps[name]:
        m = _OPCODE.search(instr)
        if not m or m.group(1) in _FREE:
            continue
        n += 1
        op = m.group(1)
        if op == "conditional":
            branches = (
                re.findall(r"%([\w.\-]+)", instr.split("branch_computations=")[-1].split("}")[0])
                if "branch_computations" in instr
                else re.findall(r"_computation=%?([\w.\-]+)", instr)
            )
            n += max((_inclusive(b, comps, fused, set(seen)) for b in branches), default=0)
        elif op in ("while", "call"):
            for c in re.findall(r"(?:body|condition|to_apply)=%?([\w.\-]+)", instr):
                n += _inclusive(c, comps, fused, set(seen))
    return n
