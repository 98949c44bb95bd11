"""``torch``: torchdiffeq on the same problem, an optional peer (recorded as skipped when
``import torch, torchdiffeq`` fails; install with ``pip install -e '.[bench]'``).

Same network (weights copied), 21 samples on [0, 5], rtol = atol = 1e-6, Adam, float32.
torchdiffeq has no Tsit5: ``dopri5`` (the same order, 5(4)) is used. Times ``odeint`` (backprop
through the solver's operations) and ``odeint_adjoint``, and in the same process the ude step
(fused, as ``fit`` runs it, and one step per call with :class:`ude.train.Stepper`) for the ratios.
"""

from __future__ import annotations

import time

from common import ATOL, FUSED, LR, RTOL, compare, problem

NAME = "torch"
FULL_ONLY = False


def run(mode: str) -> dict:
    try:
        import torch
        import torchdiffeq
    except Exception as e:  # noqa: BLE001 - any import failure means: not available
        return {
            "skipped": f"torch/torchdiffeq not importable ({type(e).__name__}: {e})",
            "rows": [],
            "columns": [],
        }
    import numpy as np

    torch.set_num_threads(1)
    model, data = problem("float32")
    ts = torch.tensor(np.asarray(data.ts))
    ys = torch.tensor(np.asarray(data.ys[0]))
    alpha, gamma = float(model.known.p("alpha")), float(model.known.p("gamma"))
    layers = []
    for i, lin in enumerate(model.correction.layers):
        t = torch.nn.Linear(lin.weight.shape[1], lin.weight.shape[0])
        with torch.no_grad():
            t.weight.copy_(torch.tensor(np.asarray(lin.weight)))
            t.bias.copy_(torch.tensor(np.asarray(lin.bias)))
        layers += [t] + ([torch.nn.Tanh()] if i < len(model.correction.layers) - 1 else [])
    net = torch.nn.Sequential(*layers)

    class VF(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            known = torch.stack([alpha * y[0], -gamma * y[1]])
            return known + self.net(y)

    vf = VF()
    steps = 5 if mode == "quick" else 20
    rows, out = [], {}
    for name, solver in (
        ("odeint", torchdiffeq.odeint),
        ("odeint_adjoint", torchdiffeq.odeint_adjoint),
    ):
        opt = torch.optim.Adam(vf.parameters(), lr=LR)

        def step(opt=opt, solver=solver):
            opt.zero_grad()
            pred = solver(vf, ys[0], ts, rtol=RTOL, atol=ATOL, method="dopri5")
            loss = ((pred - ys) ** 2).sum()
            loss.backward()
            opt.step()
            return loss.detach().item()

        step()  # warm-up
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            step()
            times.append(1e3 * (time.perf_counter() - t))
        out[name] = {"wall_ms": float(np.median(times)), "samples_ms": times}
        rows.append({"candidate": f"torchdiffeq {name}", "wall ms/step": float(np.median(times))})
    import udestep

    from ude.solve import SolverOptions

    c, one, many = udestep.ude_step(
        model, data, SolverOptions("tsit5", rtol=RTOL, atol=ATOL), FUSED
    )

    def per_step(k=10):
        state = c
        for _ in range(k):
            state = one(state)[0]
        return state

    res = compare(
        {"ude_fused": (lambda: many(c), FUSED), "ude_per_step": (per_step, 10)},
        5 if mode == "quick" else 15,
    )
    for k, v in res.items():
        out[k] = v
        rows.append({"candidate": k.replace("_", " "), "wall ms/step": v["wall_ms"]})
    for name in ("odeint", "odeint_adjoint"):
        for k in ("ude_fused", "ude_per_step"):
            r = out[name]["wall_ms"] / res[k]["wall_ms"]
            out.setdefault("ratios", {})[f"torchdiffeq {name} / {k}"] = r
            rows.append(
                {
                    "candidate": f"ratio torchdiffeq {name} / {k.replace('_', ' ')}",
                    "wall ms/step": r,
                }
            )
    return {
        "timings": out,
        "torch": torch.__version__,
        "torchdiffeq": torchdiffeq.__version__,
        "rows": rows,
        "columns": ["candidate", "wall ms/step"],
    }
