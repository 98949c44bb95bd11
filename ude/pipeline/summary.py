"""The short text table printed at the end of a run, from its metrics (``ude run`` prints it)."""

from __future__ import annotations

import math

__all__ = ["summary"]


def _fmt(x, spec=".4g") -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def _diverges(ude_rmse, rmse) -> bool:
    """Whether the UDE's forecast error says it blew up: not finite, or a thousand times the
    recovered model's (and above 10)."""
    if ude_rmse is None:
        return False
    if not math.isfinite(ude_rmse):
        return True
    return ude_rmse > 10 and (rmse is None or ude_rmse > 1e3 * rmse)


def summary(metrics: dict) -> str:
    """The short table printed at the end of a run."""
    rows = [("run", metrics.get("run_dir", ""))]
    loss = f"final {_fmt(metrics.get('final_loss'))}"
    if metrics.get("noise_floor") is not None:
        loss += f"   noise floor {_fmt(metrics['noise_floor'])}"
    if metrics.get("refit_loss") is not None:
        loss += f"   after refit {_fmt(metrics['refit_loss'])}"
    rows.append(("loss", loss))
    fit = metrics.get("fit") or {}
    if fit.get("steps") is not None:
        rej = fit.get("rejected") or []
        line = f"{fit['steps']} steps, "
        line += (
            f"{sum(rej)} rejected (per stage: {', '.join(map(str, rej))})"
            if any(rej)
            else "none rejected"
        )
        rows.append(("fit", line))
    if fit.get("status") is not None:
        line = fit["status"]
        if fit.get("loss_to_floor") is not None:
            where = "known" if fit.get("floor_source") == "truth" else "estimated from the data"
            line += f" (final loss {_fmt(fit['loss_to_floor'], '.3g')}× the noise floor, {where}"
            line += f"; gate {_fmt(fit.get('max_ratio'), 'g')}×)" if fit.get("max_ratio") else ")"
        rows.append(("status", line))
    if metrics.get("parameters"):
        rows.append(
            ("learned", ", ".join(f"{k} = {_fmt(v)}" for k, v in metrics["parameters"].items()))
        )
    eqs = metrics.get("equations")
    if eqs:
        rows.append(("discovered", eqs[0]))
        rows.extend(("", e) for e in eqs[1:])
        if metrics.get("discovery_caution"):
            rows.append(("", f"({metrics['discovery_caution']})"))
    elif metrics.get("discovered") is None:
        rows.append(("discovered", "(discovery off)"))
    if metrics.get("refit_parameters"):
        rows.append(
            (
                "refit",
                ", ".join(
                    f"{k} = {_fmt(v)}" for k, v in sorted(metrics["refit_parameters"].items())
                ),
            )
        )
    ex = metrics.get("extrapolation") or {}
    if ex:
        what = {"discovered": "recovered model", "ude": "UDE"}.get(ex.get("model"), ex.get("model"))
        line = f"to t = {_fmt(ex.get('t_end'))}: RMSE {_fmt(ex.get('rmse'))} ({what}"
        line += f" vs {ex['reference']})" if ex.get("reference") else ", no reference)"
        if ex.get("ude_rmse") is not None:
            line += f"   UDE {_fmt(ex['ude_rmse'])}"
            if _diverges(ex["ude_rmse"], ex.get("rmse")):
                line += (
                    " (the UDE's own forecast diverges beyond the training window: its network "
                    "was only fitted inside it; the recovered equations are what forecast)"
                )
        if ex.get("held_out_rmse") is not None and ex.get("reference") != "held-out data":
            line += f"   held-out data {_fmt(ex['held_out_rmse'])}"
        if not ex.get("ok", True):
            line += "   (the model blew up)"
        rows.append(("extrapolation", line))
    exps = metrics.get("experiments")
    if exps:
        rows.append(("experiments", _experiments_line(exps)))
    ens = metrics.get("ensemble")
    if ens:
        losses = [x for x in ens.get("final_losses") or [] if x is not None]
        line = f"{ens.get('members')} members, final loss "
        line += f"{_fmt(min(losses))} … {_fmt(max(losses))}" if losses else "—"
        line += f" (member {ens.get('best_member')} kept)"
        spread = ens.get("trajectory_spread") or {}
        if spread:
            line += f"; 5–95 % at t = {_fmt(ens.get('spread_t'))}: " + ", ".join(
                f"{s} {_fmt(v.get('p05'))}–{_fmt(v.get('p95'))}" for s, v in spread.items()
            )
        rows.append(("ensemble", line))
    rows.append(("wall time", f"{_fmt(metrics.get('wall_seconds'), '.1f')} s"))
    later = (metrics.get("sessions") or [])[1:]
    if later:
        rows.append(
            (
                "later",
                ", ".join(f"{s['command']} {_fmt(s.get('wall_seconds'), '.1f')} s" for s in later),
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _experiments_line(exps: dict) -> str:
    """How many experiments were trained on and held out, and the pooled RMSE of each model."""
    line = f"{len(exps.get('trained', []))} trained on"
    held = exps.get("held_out") or []
    if held:
        line += f", {len(held)} held out ({', '.join(held)})"
    label = {"discovered": "recovered model", "ude": "UDE", "physics": "known physics alone"}
    for split in ("held_out", "train"):
        rmse = (exps.get("pooled_rmse") or {}).get(split)
        if rmse:
            where = "held out" if split == "held_out" else "trained"
            line += f"; RMSE {where}: " + ", ".join(
                f"{label.get(k, k)} {_fmt(v)}" for k, v in rmse.items()
            )
            break
    return line
