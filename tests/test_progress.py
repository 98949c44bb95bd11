"""Progress that tells the truth (ude.train.progress): ``compiling`` until the first chunk
returns, an ETA from run time only, a summary line per stage that stays, and plain lines with no
``\\r`` when stderr is not a terminal. Mostly the helper with a fake clock; one tiny real fit."""

import io

import jax.random as jr
import pytest
from helpers import noisy_lv_members
from tqdm import tqdm

from ude.model import UDE
from ude.nn import MLP
from ude.physics import LotkaVolterra
from ude.train import LBFGS, Adam, Collocation, fit
from ude.train.progress import StageProgress, format_seconds, progress_mode


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _plain(total=400, every=0.0, **kw):
    out, clock = io.StringIO(), Clock()
    p = StageProgress("stage 1/2 adam", total, mode="plain", file=out, clock=clock, every=every)
    return p, out, clock


def _lines(out):
    return out.getvalue().splitlines()


# ------------------------------------------------------------------------------------ the helper
def test_plain_one_line_per_update_no_carriage_return_and_compiling_first():
    p, out, clock = _plain()
    assert _lines(out) == ["stage 1/2 adam 0/400 compiling..."]
    for i, t in enumerate((10.0, 11.0, 12.0)):  # chunk 1 holds a 9 s compile
        clock.t = t
        p.update(100, {"loss": f"{1.0 / (i + 1):.4g}", "rejected": i})
    clock.t = 13.0
    p.update(100, {"loss": "0.2", "rejected": 3})
    p.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = _lines(out)
    assert len(lines) == 1 + 3 + 1  # compiling, chunks 1-3, summary (chunk 4 ends the stage)
    assert lines[1] == "stage 1/2 adam 100/400 loss=1 rejected=0 | compiled, first chunk in 10.0 s"
    assert lines[2].startswith("stage 1/2 adam 200/400 loss=0.5 rejected=1 | 11.0 s elapsed")
    assert lines[2].endswith(", 100 steps/s, eta 2.0 s")
    assert lines[-1] == "stage 1/2 adam: 400 steps, loss 0.2, 3 rejected, 13.0 s"


def test_eta_ignores_the_compile_chunk():
    p, out, clock = _plain()
    assert p.eta() is None
    clock.t = 30.0  # compile + the first 100 steps
    p.update(100, {"loss": "1"})
    assert p.eta() is None  # unknown: the only chunk so far holds the compile
    clock.t = 31.0  # 100 steps in 1 s of run time: 200 steps left take 2 s (not 2 * 15.5 s)
    p.update(100, {"loss": "0.5"})
    assert p.rate() == pytest.approx(100.0) and p.eta() == pytest.approx(2.0)
    assert _lines(out)[-1].endswith("| 31.0 s elapsed, 100 steps/s, eta 2.0 s")


def test_plain_lines_at_most_every_so_many_seconds():
    p, out, clock = _plain(total=1000, every=5.0)
    for i in range(1, 10):
        clock.t = 10.0 + i  # chunks a second apart
        p.update(100, {"loss": "1"})
    p.close()
    lines = _lines(out)
    # compiling; chunk 1 (always); then one per 5 s: at 16 s and 21 s would be due, 19 s is last
    assert [ln.split(" ")[3] for ln in lines[1:-1]] == ["100/1000", "600/1000"]
    assert lines[-1].startswith("stage 1/2 adam: 900 steps")


def test_bar_says_compiling_then_eta_from_run_time_and_leaves_a_summary():
    out, clock = io.StringIO(), Clock()
    p = StageProgress("stage 1/1 lbfgs", 400, mode="bar", file=out, clock=clock)
    assert "compiling" in out.getvalue() and "0/400" in out.getvalue()
    clock.t = 20.0
    p.update(100, {"loss": "1", "rejected": 0})
    clock.t = 21.0
    p.update(100, {"loss": "0.5", "rejected": 2})
    shown = tqdm.format_meter(**p.bar.format_dict)
    assert "200/400" in shown and "<00:02" in shown  # 200 left at 100 steps/s of run time
    assert "loss=0.5" in shown and "compiling" not in shown
    p.close(note="converged")
    assert out.getvalue().splitlines()[-1] == (
        "stage 1/1 lbfgs: 200 steps, loss 0.5, 2 rejected, converged, 21.0 s"
    )


def test_none_prints_nothing():
    out = io.StringIO()
    p = StageProgress("stage 1/1 adam", 10, mode="none", file=out)
    p.update(10, {"loss": "1"})
    p.close()
    assert out.getvalue() == ""


def test_mode_from_verbose_env_and_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("UDE_PROGRESS", raising=False)
    assert progress_mode(True, io.StringIO()) == "plain"  # a log file, a pipe
    assert progress_mode(True, Tty()) == "bar"
    assert progress_mode(False, Tty()) == "none"
    assert progress_mode("plain", Tty()) == "plain"  # an explicit mode wins
    monkeypatch.setenv("UDE_PROGRESS", "PLAIN")
    assert progress_mode(True, Tty()) == "plain"
    monkeypatch.setenv("UDE_PROGRESS", "bar")
    assert progress_mode(True, io.StringIO()) == "bar"
    monkeypatch.setenv("UDE_PROGRESS", "none")
    assert progress_mode(True, Tty()) == "none"
    monkeypatch.setenv("UDE_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="UDE_PROGRESS='fancy'.*auto, bar, plain, none"):
        progress_mode(True)


def test_every_from_env(monkeypatch):
    monkeypatch.setenv("UDE_PROGRESS_EVERY", "0")
    assert StageProgress("s", 1, mode="plain", file=io.StringIO()).every == 0.0
    monkeypatch.setenv("UDE_PROGRESS_EVERY", "soon")
    with pytest.raises(ValueError, match="UDE_PROGRESS_EVERY='soon'"):
        StageProgress("s", 1, mode="plain", file=io.StringIO())


def test_format_seconds():
    assert [format_seconds(s) for s in (0.04, 8.14, 59.9, 125.0, 3725.0)] == [
        "0.0 s",
        "8.1 s",
        "59.9 s",
        "2m05s",
        "1h02m",
    ]


# ------------------------------------------------------------------------------- a real fit
def test_fit_in_a_log_file_one_line_per_chunk_and_a_summary_per_stage(capsys, monkeypatch):
    monkeypatch.setenv("UDE_PROGRESS", "plain")
    monkeypatch.setenv("UDE_PROGRESS_EVERY", "0")
    _, data = noisy_lv_members(1)
    truth = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
    model = UDE(truth.keep("growth", "death"), MLP(2, 2, width=4, depth=1, key=jr.key(0)))
    stages = [Adam(lr=0.05, steps=10), LBFGS(steps=6)]
    fit(model, _single(data), Collocation(), stages, key=jr.key(1), chunk=5, verbose=True)
    err = capsys.readouterr().err  # pytest's capture: stderr is no terminal
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0] == "stage 1/2 adam 0/10 compiling..."
    assert lines[1].startswith("stage 1/2 adam 5/10 loss=") and "first chunk in" in lines[1]
    assert lines[2].startswith("stage 1/2 adam: 10 steps, loss ") and "0 rejected" in lines[2]
    assert lines[3] == "stage 2/2 lbfgs 0/6 compiling..."
    assert lines[4].startswith("stage 2/2 lbfgs 5/6 loss=")
    assert lines[-1].startswith("stage 2/2 lbfgs: 6 steps, loss ")
    assert len(lines) == 6


def _single(data):
    """Member 0 of the stacked test data."""
    from ude.train.ensemble import member

    return member(data, 0)
