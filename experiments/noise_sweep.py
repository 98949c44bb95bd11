"""How often is the right equation found? 100 runs per noise level (new noise and network init
each); a run succeeds when discovery keeps exactly ``c₁·xy`` in x' and ``c₂·xy`` in y'.

All runs of one level train as one vmapped program (``ude.train.ensemble.fit_ensemble``: a
collocation pre-fit, then single shooting with learned initial states, Adam then L-BFGS).
Discovery per run regresses the network's output along the run's own trajectory (dt 0.05, the
paper's 23-term library and λ sweep); the support is then chosen by simulation
(``ude.discovery.simulation``: the best 1-3-term supports per equation and the paper's pick, all
runs' candidates refitted through the ODE in one ensemble, AICc on the data). The paper's own
selection rule on the same networks is reported next to it.

    python experiments/noise_sweep.py            # the full sweep (500 fits)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from experiments import common

DEFAULTS = dict(
    levels=(0.001, 0.005, 0.01, 0.025, 0.05),
    runs=100,
    seed=0,
    width=5,
    depth=3,
    l2=1e-4,  # the paper's 1e-4·‖θ‖²/|θ|
    collocation_steps=1000,  # solve-free pre-training on kernel-smoothed derivatives
    collocation_lr=0.05,
    adam_steps=200,
    adam_lr=0.01,  # single shooting through the solver
    lbfgs_steps=100,
    learn_y0=True,  # the first sample is noisy: learn the initial state too
    rtol=1e-6,
    atol=1e-6,
    regressor_nu=100.0,
    max_terms=3,
    top=(3, 1, 1),
    score="bic",
    delta=2.0,  # selection by simulation
    refit_steps=50,  # Levenberg-Marquardt iterations (most converge in 10-30)
    refit_rtol=1e-6,
    refit_max_steps=64,  # a healthy solve on [0, 3] at 1e-6 takes ~17 steps; a candidate that
    # blows up must not hold the whole vmapped batch for 4096 steps
    chunk=50,
    out=None,
    verbose=True,
)

TRUTH = dict(alpha=1.3, beta=0.9, gamma=1.8, delta=0.8)
U0 = (0.44249296, 4.6280594)


def success(mask: np.ndarray, names) -> bool:
    """Exactly the ``x*y`` term in both equations, nothing else."""
    want = np.zeros_like(mask, bool)
    want[list(names).index("x*y"), :] = True
    return bool(np.array_equal(mask, want))


@eqx.filter_jit
def trajectories(models, y0s, ts):
    """Each run's own trajectory on ``ts`` from its initial state, and the network's output along
    it (one program for every level: the grid is an argument)."""
    import ude

    def one(m, y0):
        Y = ude.solve(m, y0, ts, ude.SolverOptions("tsit5", rtol=1e-8, atol=1e-8)).ys[0]
        return Y, jax.vmap(lambda y: m.missing(0.0, y))(Y)

    return eqx.filter_vmap(one)(models, y0s)


def run_level(level: float, p: dict, clean, make, log) -> dict:
    """All runs of one noise level: one ensemble fit per strategy, one vmapped trajectory solve,
    the paper's λ sweep per run, then every run's candidate supports refitted in one ensemble."""
    import ude
    from ude.discovery.simulation import select_many
    from ude.train.ensemble import fit_ensemble, resample_noise

    runs = p["runs"]
    keys = jr.split(jr.fold_in(jr.key(p["seed"]), int(round(level * 1e6))), 4)
    data = resample_noise(clean, ude.RelativeMeanNoise(level), jr.split(keys[0], runs))
    models = eqx.filter_vmap(make)(jr.split(keys[1], runs))
    opts = ude.SolverOptions("tsit5", rtol=p["rtol"], atol=p["atol"])
    t0 = time.perf_counter()
    losses, stage_idx, secs = [], [], []
    if p["collocation_steps"]:
        r = fit_ensemble(
            models,
            data,
            ude.Collocation(l2=p["l2"]),
            [ude.Adam(lr=p["collocation_lr"], steps=p["collocation_steps"])],
            key=keys[2],
            chunk=p["chunk"],
            verbose=p["verbose"],
        )
        models = r.models
        losses.append(r.history["loss"])
        stage_idx += [0] * r.history["loss"].shape[1]
        secs.append(r.wall_seconds)
    shoot = ude.SingleShooting(options=opts, l2=p["l2"], learn_y0=bool(p["learn_y0"]))
    stages = [
        st
        for st in (
            ude.Adam(lr=p["adam_lr"], steps=p["adam_steps"]),
            ude.LBFGS(steps=p["lbfgs_steps"]),
        )
        if st.steps > 0
    ]
    r = fit_ensemble(
        models, data, shoot, stages, key=keys[3], chunk=p["chunk"], verbose=p["verbose"]
    )
    losses.append(r.history["loss"])
    stage_idx += list(np.asarray(r.history["stage"]) + len(secs))
    secs.append(r.wall_seconds)
    t_fit = time.perf_counter() - t0
    final_loss = r.final_losses

    # the paper's discovery data: each run's own trajectory every 0.05 on [0, 3], from its
    # (learned) initial state, and the network's output along it
    fine = jnp.asarray(np.round(np.arange(0.0, 3.0 + 1e-9, 0.05), 10))
    learned = isinstance(r.extra, ude.train.LearnedInitialStates)
    y0s = r.extra.y0 if learned else data.ys[:, :, 0, :]
    Y, U = map(np.asarray, trajectories(r.models, y0s, fine))
    library = ude.paper_library(("x", "y"))
    regressor = ude.SR3(nu=p["regressor_nu"])
    finite = [bool(np.all(np.isfinite(Y[b])) and np.all(np.isfinite(U[b]))) for b in range(runs)]
    good = [b for b in range(runs) if finite[b]]
    t_reg = time.perf_counter()
    base = [ude.discovery.regress(library, Y[b], U[b], regressor, criterion="paper") for b in good]
    t_reg = time.perf_counter() - t_reg
    log(f"  regression: {len(good)} runs, {t_reg:.1f} s")
    t_sel = time.perf_counter()
    known = ude.train.ensemble.member(r.models, 0).known
    sub = ude.train.ensemble.member(data, np.asarray(good))
    refit_opts = ude.SolverOptions(
        "tsit5", rtol=p["refit_rtol"], atol=p["refit_rtol"], max_steps=p["refit_max_steps"]
    )
    chosen = (
        select_many(
            base,
            known,
            sub,
            max_terms=p["max_terms"],
            top=p["top"],
            score=p["score"],
            delta=p["delta"],
            options=refit_opts,
            max_steps=p["refit_steps"],
        )
        if good
        else []
    )
    t_sel = time.perf_counter() - t_sel
    ok, ok_paper, found = [False] * runs, [False] * runs, [None] * runs
    for b, d, c in zip(good, base, chosen, strict=True):
        ok_paper[b] = success(d.mask, library.names)
        ok[b] = success(c.discovery.mask, library.names)
        found[b] = c.discovery.as_dict()
    t_all = time.perf_counter() - t0
    ut = np.stack([-0.9 * Y[..., 0] * Y[..., 1], 0.8 * Y[..., 0] * Y[..., 1]], -1)
    with np.errstate(all="ignore"):
        rel = np.linalg.norm(U - ut, axis=1) / np.linalg.norm(ut, axis=1)
    xy = [f["x"].get("x*y") if f and f.get("x") else None for f in found]
    yx = [f["y"].get("x*y") if f and f.get("y") else None for f in found]
    log(
        f"noise {level:g}: {sum(ok)}/{runs} recovered (the paper's selection rule on the same "
        f"networks: {sum(ok_paper)}), fit {t_fit:.1f} s, selection {t_sel:.1f} s, "
        f"total {t_all:.1f} s"
    )
    return {
        "level": level,
        "successes": int(sum(ok)),
        "successes_paper_rule": int(sum(ok_paper)),
        "runs": runs,
        "success": ok,
        "final_loss": final_loss,
        "losses": np.concatenate(losses, axis=1),
        "stage_index": np.asarray(stage_idx),
        "relative_error_U": np.nanmedian(rel, axis=0),
        "found": found,
        "coef_x_xy": xy,
        "coef_y_xy": yx,
        "fit_seconds": t_fit,
        "selection_seconds": t_sel,
        "seconds": t_all,
        "stage_seconds": secs,
    }


def main(**overrides) -> dict:
    """Run the sweep; returns (and writes ``noise_sweep.json`` with) the success counts."""
    common.enable_x64()
    import ude

    p = common.params("noise_sweep", DEFAULTS, overrides)
    out = common.out_dir("noise_sweep", p["out"])
    log = print if p["verbose"] else (lambda *_: None)
    truth = ude.LotkaVolterra(**TRUTH)
    ts = np.round(np.arange(31) * 0.1, 10)
    clean = ude.simulate(truth, U0, ts)
    known = truth.keep("growth", "death")

    def make(k):
        return ude.UDE(
            known,
            ude.MLP(
                2, 2, width=p["width"], depth=p["depth"], activation="rbf", init="glorot", key=k
            ),
        )

    t0 = time.perf_counter()
    levels = [run_level(float(lv), p, clean, make, log) for lv in p["levels"]]
    wall = time.perf_counter() - t0
    paper = common.PAPER["noise_sweep"]
    summary = {
        "levels": [lv["level"] for lv in levels],
        "successes": [lv["successes"] for lv in levels],
        "successes_paper_rule": [lv["successes_paper_rule"] for lv in levels],
        "runs": p["runs"],
        "paper_successes": [
            paper["successes"][paper["levels"].index(lv["level"])]
            if lv["level"] in paper["levels"]
            else None
            for lv in levels
        ],
        "wall_seconds": wall,
        "settings": {k: v for k, v in p.items() if k not in ("out",)},
        "per_level": [
            {k: v for k, v in lv.items() if k not in ("losses", "stage_index")} for lv in levels
        ],
    }
    common.write_json(out / "noise_sweep.json", summary)
    np.savez_compressed(
        out / "losses.npz", **{f"level_{lv['level']:g}": lv["losses"] for lv in levels}
    )
    summary["figures"] = draw(levels, summary, out)
    log(
        f"noise sweep: {summary['successes']} of {p['runs']} (paper {summary['paper_successes']}); "
        f"{wall:.0f} s"
    )
    return summary


def draw(levels, summary, out: Path) -> list[str]:
    fig, axes = common.figure(1, 1, size=(6.0, 3.6))
    ax = axes[0, 0]
    x = np.arange(len(levels))
    runs = summary["runs"]
    ours = 100.0 * np.asarray(summary["successes"]) / runs
    paper = [np.nan if s is None else s for s in summary["paper_successes"]]
    ax.bar(x - 0.2, paper, 0.4, color="0.6", label="paper (of 100)")
    ax.bar(x + 0.2, ours, 0.4, color="tab:blue", label=f"ours ({runs} runs)")
    for xi, v in zip(x, ours, strict=True):
        ax.annotate(f"{v:.0f}", (xi + 0.2, v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [f"{100 * lv['level']:g} %" for lv in levels])
    ax.set_ylabel("runs recovering exactly x·y (%)")
    ax.set_xlabel("noise level")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    paths = common.save(fig, out, "noise_sweep_success")

    fig, axes = common.figure(1, len(levels), size=(3.4, 3.0))
    for i, lv in enumerate(levels):
        ax = axes[0, i]
        L = np.asarray(lv["losses"], float)
        steps = np.arange(1, L.shape[1] + 1)
        for row in L:
            ok = np.isfinite(row) & (row > 0)
            ax.plot(steps[ok], row[ok], color="tab:blue", alpha=0.08, lw=0.6)
        with np.errstate(all="ignore"):
            mean = np.exp(np.nanmean(np.log(np.where(L > 0, L, np.nan)), axis=0))
        ax.plot(steps, mean, color="k", lw=1.5, label="geometric mean")
        for b in np.flatnonzero(np.diff(lv["stage_index"])):
            ax.axvline(b + 1.5, color="0.5", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"noise {100 * lv['level']:g} %")
        ax.set_xlabel("step")
    axes[0, 0].set_ylabel("loss")
    axes[0, 0].legend(fontsize=7)
    paths += common.save(fig, out, "noise_sweep_losses")
    return paths


if __name__ == "__main__":
    main()
