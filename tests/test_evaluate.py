"""Extrapolation metrics against references: exact peaks of sin, the Lotka–Volterra conserved
quantity and scipy event detection for peaks and periods, hand-computed RMSE, grids, held-out
errors, bands and coefficient errors, the true missing term's coefficients by construction."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from ude.data import Dataset, simulate
from ude.discovery import DiscoveredModel, PolynomialLibrary, TrigLibrary
from ude.evaluate import (
    along_trajectories,
    band_stats,
    coefficient_errors,
    evaluation_grid,
    extrapolate,
    extrapolation_errors,
    extrapolation_mask,
    find_peaks,
    held_out_rmse,
    noise_floor,
    oscillation_comparison,
    oscillation_stats,
    time_grid,
    true_coefficients,
    unique_times,
    window_rmse,
)
from ude.physics import LotkaVolterra
from ude.solve import SolverOptions
from ude.train import SingleShooting

A, B, G, D = 1.3, 0.9, 1.8, 0.8
U0 = np.array([0.44249296, 4.6280594])


def test_time_grid():
    np.testing.assert_allclose(time_grid(0.0, 50.0, 0.1), np.linspace(0, 50, 501), atol=1e-12)
    ts = time_grid(0.0, 1.0, 0.3)
    np.testing.assert_allclose(ts, [0.0, 0.3, 0.6, 0.9, 1.0])
    with pytest.raises(ValueError, match="dt"):
        time_grid(0.0, 1.0, 0.0)


def test_find_peaks_of_sine_are_exact():
    ts = np.arange(0.0, 21.0, 0.01)
    t, h = find_peaks(ts, np.sin(ts))
    ref = np.pi / 2 + 2 * np.pi * np.arange(4)
    # parabolic refinement: the error is O(dt^3) in time and O(dt^4) in height
    np.testing.assert_allclose(t, ref, atol=1e-6)
    np.testing.assert_allclose(h, 1.0, atol=1e-8)
    st = oscillation_stats(ts, np.sin(ts))
    assert st["n_peaks"] == 4 and st["period"] == pytest.approx(2 * np.pi, abs=1e-6)
    # noise wiggles are not peaks once a prominence is asked for
    ts = np.arange(0.0, 23.0, 0.01)  # ends in a trough, so the last peak is prominent too
    wiggly = np.sin(ts) + 0.05 * np.sin(50 * ts)
    assert len(find_peaks(ts, wiggly)[0]) > 4
    assert len(find_peaks(ts, wiggly, prominence=0.5)[0]) == 4


@pytest.fixture(scope="module")
def lv_reference():
    """Peak height of x from the conserved quantity, and the period from scipy event detection."""

    def V(x, y):
        return D * x - G * np.log(x) + B * y - A * np.log(y)

    v0 = V(*U0)
    ystar = A / B  # x peaks where x' = 0, i.e. y = α/β
    xmax = brentq(lambda x: V(x, ystar) - v0, G / D, 50.0)

    def event(t, u):
        return A - B * u[1]  # x' / x; crosses downward... x' changes sign + -> - at a peak

    event.direction = -1
    sol = solve_ivp(
        lambda t, u: [A * u[0] - B * u[0] * u[1], -G * u[1] + D * u[0] * u[1]],
        (0, 50),
        U0,
        events=event,
        rtol=1e-12,
        atol=1e-12,
        method="DOP853",
    )
    return xmax, np.mean(np.diff(sol.t_events[0]))


def test_lv_oscillation_stats_match_references(lv_reference):
    xmax, period = lv_reference
    ts, ys, ok = extrapolate(
        {"truth": LotkaVolterra(A, B, G, D)}, jnp.asarray(U0), t1=50.0, dt=0.01
    )
    assert ok["truth"] and ts.shape == (5001,)
    st = oscillation_stats(ts, ys["truth"][:, 0])
    assert st["peak_height"] == pytest.approx(xmax, rel=1e-6)
    assert st["period"] == pytest.approx(period, rel=1e-6)
    assert 5.0 < period < 6.0  # the paper's ~5.46


def test_window_rmse_and_coefficient_errors():
    ts = np.array([0.0, 1.0, 2.0, 3.0])
    truth = np.zeros((4, 2))
    pred = np.array([[0, 0], [1, 1], [3, 3], [4, 4]], float)
    r = window_rmse(ts, pred, truth, t_split=1.0)
    assert r["train"] == pytest.approx(np.sqrt(0.5))
    assert r["beyond"] == pytest.approx(np.sqrt(12.5))
    assert r["all"] == pytest.approx(np.sqrt((0 + 2 + 18 + 32) / 8))
    r = window_rmse(ts, np.full((4, 2), np.inf), truth, 1.0)
    assert r["beyond"] == np.inf

    truth_c = {"x": {"x*y": -0.9}, "y": {"x*y": 0.8}}
    e = coefficient_errors({"x": {"x*y": -0.877}, "y": {"x*y": 0.923}}, truth_c)
    assert e["exact_support"] and not e["missing"] and not e["spurious"]
    assert e["per_term"]["x"]["x*y"]["relative_error"] == pytest.approx(0.023 / 0.9)
    assert e["max_relative_error"] == pytest.approx(0.123 / 0.8)
    e = coefficient_errors({"x": {"x*y": -0.9, "y^2": 0.1}, "y": {}}, truth_c)
    assert e["missing"] == ["y: x*y"] and e["spurious"] == ["x: y^2"] and not e["exact_support"]
    assert e["per_term"]["y"]["x*y"]["relative_error"] == 1.0


def test_window_rmse_along_an_axis():
    ts = np.array([0.0, 1.0, 2.0])
    pred = np.arange(12.0).reshape(2, 3, 2)  # (traj, times, state)
    truth = np.zeros_like(pred)
    r = window_rmse(ts, pred, truth, t_split=1.0, axis=1)
    assert r["train"] == pytest.approx(np.sqrt(np.mean(pred[:, :2] ** 2)))
    assert r["beyond"] == pytest.approx(np.sqrt(np.mean(pred[:, 2:] ** 2)))
    assert np.isnan(window_rmse(ts, pred, truth, t_split=2.0, axis=1)["beyond"])
    with pytest.raises(ValueError, match="times on axis 0"):
        window_rmse(ts, pred, truth, 1.0)


def test_grids():
    np.testing.assert_allclose(
        unique_times([0.0, 0.5, 1.0], [0.5 + 1e-12, 0.25]), [0.0, 0.25, 0.5, 1.0]
    )
    data_ts = np.array([0.0, 0.3, 0.7, 1.0])
    # the fit grid (every 0.25 to t_train = 0.7), the extrapolation grid (every 0.5 to 2) and
    # the data
    grid = evaluation_grid(data_ts, 0.7, 2.0, fit_dt=0.25, ext_dt=0.5)
    np.testing.assert_allclose(grid, [0.0, 0.25, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0])
    t_end, on = extrapolation_mask(grid, data_ts, 0.7, 2.0, ext_dt=0.5)
    assert t_end == 2.0
    np.testing.assert_array_equal(grid[on], [0.0, 0.5, 1.0, 1.5, 2.0])
    # no horizon: the data's end; never before the end of training
    t_end, on = extrapolation_mask(grid, data_ts, 0.7, None, ext_dt=0.5)
    assert t_end == 1.0 and grid[on].tolist() == [0.0, 0.5, 1.0]
    assert evaluation_grid(data_ts, 1.0, 0.5, fit_dt=0.5, ext_dt=0.5)[-1] == 1.0


def test_held_out_rmse_and_bands():
    pred = np.array([[[1.0, 2.0], [3.0, 5.0]]])
    obs = np.zeros_like(pred)
    mask = np.array([[[True, False], [False, True]]])
    assert held_out_rmse(pred, obs, mask) == pytest.approx(np.sqrt((1 + 25) / 2))
    assert held_out_rmse(pred, obs, np.zeros_like(mask)) is None
    lo = np.zeros((2, 3, 2))
    hi = np.ones((2, 3, 2)) * np.array([1.0, 2.0])
    mid = 0.5 * hi
    mid[0, -1] = [0.4, 0.9]
    b = band_stats(lo, mid, hi, ("x", "y"))
    assert b["x"] == {"p05": 0.0, "p50": 0.4, "p95": 1.0, "band_rms": 1.0}
    assert b["y"]["p50"] == 0.9 and b["y"]["band_rms"] == 2.0


def test_true_coefficients_and_missing_term_along_trajectories():
    lv = LotkaVolterra(A, B, G, D)
    missing = lv.keep("predation", "reproduction")
    ys = np.asarray(simulate(lv, U0, np.linspace(0, 3, 31)).y_true)
    lib = PolynomialLibrary(("x", "y"), degree=2)
    assert true_coefficients(lib, missing, ys, ("x", "y")) == {"x": {"x*y": -B}, "y": {"x*y": D}}
    assert true_coefficients(TrigLibrary(("x", "y")), missing, ys, ("x", "y")) is None
    assert true_coefficients(lib, None, ys, ("x", "y")) is None
    u = along_trajectories(missing, np.linspace(0, 3, 31), ys)
    np.testing.assert_allclose(u[0, :, 0], -B * ys[0, :, 0] * ys[0, :, 1], rtol=1e-12)
    np.testing.assert_allclose(u[0, :, 1], D * ys[0, :, 0] * ys[0, :, 1], rtol=1e-12)


def test_noise_floor_is_the_truths_loss():
    lv = LotkaVolterra(A, B, G, D)
    ts = np.linspace(0, 3, 31)
    clean = simulate(lv, U0, ts)
    strategy = SingleShooting(
        options=SolverOptions("tsit5", rtol=1e-10, atol=1e-10), reduction="sse"
    )
    # the data's first sample is the initial state: an offset of 0.1 everywhere shifts it too, so
    # compare the loss with the offset data's own truth solve
    assert noise_floor(lv, clean, strategy) == pytest.approx(0.0, abs=1e-14)
    shifted = Dataset(clean.ts, clean.ys.at[:, 1:].add(0.1))  # the first sample stays
    assert noise_floor(lv, shifted, strategy) == pytest.approx(30 * 2 * 0.01, rel=1e-6)


def test_extrapolation_of_the_exact_and_the_papers_model(lv_reference):
    """The pipeline's comparison: errors split at the end of training, peaks and periods."""
    known = LotkaVolterra(A, B, G, D).keep("growth", "death")
    lib = PolynomialLibrary(("x", "y"), degree=2)
    xi = np.zeros((6, 2))
    xi[4] = [-0.9, 0.8]
    exact = DiscoveredModel(known, lib, xi)
    xi_off = xi.copy()
    xi_off[4] = [-0.877, 0.923]  # the paper's recovered coefficients
    off = DiscoveredModel(known, lib, xi_off)
    ts, ys, ok = extrapolate(
        {"truth": LotkaVolterra(A, B, G, D), "exact": exact, "paper": off},
        jnp.asarray(U0)[None],
        t1=50.0,
        dt=0.01,
    )
    assert all(ok.values()) and ys["paper"].shape == (1, ts.size, 2)
    err = extrapolation_errors(
        ts, {"exact": ys["exact"], "paper": ys["paper"]}, ys["truth"], 3.0, primary="paper"
    )
    json.dumps(err)  # report-ready
    assert set(err) == {
        "rmse",
        "rmse_train",
        "rmse_beyond",
        "exact_rmse",
        "exact_rmse_train",
        "exact_rmse_beyond",
    }
    assert err["exact_rmse"] < 1e-6
    # the paper's coefficients: close on the training window, visibly off beyond it (PAPER.md:
    # lower prey peaks and a shorter period)
    assert err["rmse_train"] < err["rmse_beyond"]
    osc = oscillation_comparison(ts, ys["truth"][0], ys["paper"][0], ("x", "y"))
    assert osc["x"]["true_peak_height"] == pytest.approx(lv_reference[0], rel=1e-6)
    assert osc["x"]["true_period"] == pytest.approx(lv_reference[1], rel=1e-6)
    assert osc["x"]["peak_height"] < osc["x"]["true_peak_height"]
    assert 0.01 < 1 - osc["x"]["period"] / osc["x"]["true_period"] < 0.1
    assert coefficient_errors(off.as_dict(), {"x": {"x*y": -0.9}, "y": {"x*y": 0.8}})[
        "exact_support"
    ]
    # a signal without two peaks is left out
    flat = np.stack([ts, np.ones_like(ts)], axis=1)
    assert oscillation_comparison(ts, flat, flat, ("t", "one")) == {}
