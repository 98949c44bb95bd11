"""Model selection by simulation (ude.discovery.simulation): best subsets, AICc, and the refit of
candidate supports through the solver choosing the true Lotka–Volterra interaction terms."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

import ude
from ude.discovery import regress
from ude.discovery.simulation import aicc, best_subsets, select_by_simulation, state_weights

TRUTH = ude.LotkaVolterra(alpha=1.3, beta=0.9, gamma=1.8, delta=0.8)
U0 = (0.44249296, 4.6280594)


@pytest.fixture(scope="module")
def lv():
    ts = np.round(np.arange(0.0, 3.0 + 1e-9, 0.1), 10)
    clean = ude.simulate(TRUTH, U0, ts)
    fine = np.round(np.arange(0.0, 3.0 + 1e-9, 0.05), 10)
    Y = np.asarray(ude.simulate(TRUTH, U0, fine).ys[0])
    lib = ude.paper_library(("x", "y"))
    return clean, Y, lib


def test_best_subsets_exhaustive_matches_brute_force(lv):
    _, Y, lib = lv
    Theta = np.asarray(lib(jnp.asarray(Y)))
    rng = np.random.default_rng(0)
    u = -0.9 * Y[:, 0] * Y[:, 1] + 0.05 * rng.normal(size=len(Y))
    got = best_subsets(Theta, u, max_terms=2)
    assert len(best_subsets(Theta, u, max_terms=3, top=(3, 1))) == 5  # top pads with its last value
    for (cols, rss), k in zip(got, (1, 2), strict=True):
        brute = min(
            (np.sum((Theta[:, c] @ np.linalg.lstsq(Theta[:, c], u, rcond=None)[0] - u) ** 2), c)
            for c in itertools.combinations(range(Theta.shape[1]), k)
        )
        assert cols == brute[1]
        assert rss == pytest.approx(brute[0], rel=1e-6)
    assert [lib.names[c] for c in got[0][0]] == ["x*y"]


def test_best_subsets_greedy_beyond_the_exhaustive_limit(lv):
    _, Y, lib = lv
    Theta = np.asarray(lib(jnp.asarray(Y)))
    u = Theta[:, lib.names.index("x*y")] * -0.9 + Theta[:, lib.names.index("y^2")] * 0.1
    got = best_subsets(Theta, u, max_terms=2, max_subsets=10)  # C(23, 2) > 10: greedy from size 1
    assert {lib.names[c] for c in got[1][0]} == {"x*y", "y^2"}
    assert got[1][1] < 1e-18
    with pytest.raises(ValueError, match="max_terms"):
        best_subsets(Theta, u, max_terms=0)


def test_bic_penalises_terms_more_than_aicc():
    from ude.discovery.simulation import bic

    n = 62
    # one more term that lowers the SSE by 5 %: AICc takes it, BIC does not
    assert aicc([0.95], n, [3])[0] < aicc([1.0], n, [2])[0]
    assert bic([0.95], n, [3])[0] > bic([1.0], n, [2])[0]
    assert np.isinf(bic([np.nan], n, [1])[0])


def test_aicc_prefers_fewer_terms_at_equal_error_and_rejects_failures():
    s = aicc([1.0, 1.0, np.inf, 0.5], 60, [1, 2, 1, 3])
    assert s[0] < s[1] and np.isinf(s[2])
    assert s[3] < s[0]  # halving the error is worth two more terms at n = 60
    assert np.isinf(aicc([1.0], 3, [2])[0])  # n - k - 1 = 0: undefined


def test_state_weights(lv):
    clean, _, _ = lv
    w = state_weights(clean, "scale")
    ys = np.asarray(clean.ys)[0]
    np.testing.assert_allclose(w, 1 / np.mean(np.abs(ys), axis=0) ** 2)
    np.testing.assert_array_equal(state_weights(clean, "equal"), [1.0, 1.0])
    with pytest.raises(ValueError, match="weights"):
        state_weights(clean, "bogus")
    with pytest.raises(ValueError, match="weights"):
        state_weights(clean, [1.0, -1.0])


def test_selection_by_simulation_keeps_exactly_xy(lv):
    """A network-like target with a smooth 15 % error makes every regression-only rule keep extra
    terms; refitting candidates through the ODE against (noisy) data keeps exactly x*y."""
    import jax.random as jr

    clean, Y, lib = lv
    noisy = ude.RelativeMeanNoise(0.01).apply(clean.y_true, jr.key(7))
    data = ude.Dataset(
        clean.ts, noisy, jnp.ones(noisy.shape, bool), state_names=("x", "y"), y_true=clean.y_true
    )
    xy = Y[:, 0] * Y[:, 1]
    wobble = 1 + 0.15 * np.sin(2.0 * np.linspace(0, 3, len(Y)))  # smooth, structured error
    U = np.stack([-0.9 * xy * wobble, 0.8 * xy * wobble[::-1]], -1)
    base = regress(lib, Y, U, ude.SR3(nu=100.0), criterion="aicc")
    assert not base.kept() == {"x": ("x*y",), "y": ("x*y",)}  # the regression alone over-fits
    known = TRUTH.keep("growth", "death")
    sel = select_by_simulation(base, known, data, max_terms=2)
    assert sel.discovery.kept() == {"x": ("x*y",), "y": ("x*y",)}
    assert sel.discovery.criterion == "simulation"
    c = sel.discovery.as_dict()
    assert c["x"]["x*y"] == pytest.approx(-0.9, rel=0.02)
    assert c["y"]["x*y"] == pytest.approx(0.8, rel=0.02)
    chosen = [r for r in sel.table if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["k"] == 2
    assert all(r["score"] >= sel.table[0]["score"] for r in sel.table)  # sorted by score
    assert sel.table[0]["delta"] == 0.0
    # the refitted model is a DiscoveredModel whose coefficients are the reported ones
    np.testing.assert_allclose(np.asarray(sel.model.xi), sel.discovery.coefficients)


@pytest.fixture(scope="module")
def only_y_missing(lv):
    """Predation known, only the reproduction term δxy missing: the network's x output is a tiny
    smooth error (it learned nothing there), its y output δxy with a spurious 1e-6·y³ on top. The
    regression gives x' terms (it must, for every state it regresses) and keeps y³."""
    import jax.random as jr

    clean, Y, lib = lv
    noisy = ude.RelativeMeanNoise(0.01).apply(clean.y_true, jr.key(3))
    data = ude.Dataset(
        clean.ts, noisy, jnp.ones(noisy.shape, bool), state_names=("x", "y"), y_true=clean.y_true
    )
    xy = Y[:, 0] * Y[:, 1]
    t = np.linspace(0, 3, len(Y))
    U = np.stack([1e-4 * np.sin(2.0 * t), 0.8 * xy + 1e-6 * Y[:, 1] ** 3], -1)
    base = regress(lib, Y, U, ude.STLSQ(threshold=1e-9), criterion="aicc")
    return base, TRUTH.keep("growth", "predation", "death"), data


def test_the_empty_equation_and_tiny_terms_are_dropped(only_y_missing):
    """The empty equation is a candidate for every state, and the parsimony rule drops a term whose
    contribution to the trajectory is below the noise: x' gets nothing, y' exactly x*y."""
    base, known, data = only_y_missing
    assert base.kept()["x"] and "y^3" in base.kept()["y"]  # what the regression alone says
    sel = select_by_simulation(base, known, data, max_terms=2)
    assert sel.discovery.kept() == {"x": (), "y": ("x*y",)}
    assert sel.discovery.as_dict()["y"]["x*y"] == pytest.approx(0.8, rel=0.02)
    assert any(r["terms"]["x"] == [] for r in sel.table)


def test_pruned_joint_candidates_choose_as_the_full_product(only_y_missing):
    """Past ``max_joint`` the states' candidates are screened one state at a time and only each
    state's best ``keep_per_state`` are joined: fewer refits, the same choice."""
    base, known, data = only_y_missing
    full = select_by_simulation(base, known, data, max_terms=2)
    pruned = select_by_simulation(base, known, data, max_terms=2, max_joint=1, keep_per_state=2)
    assert len(pruned.table) == 4 < len(full.table)
    assert pruned.discovery.kept() == full.discovery.kept()
    np.testing.assert_allclose(pruned.discovery.coefficients, full.discovery.coefficients)
