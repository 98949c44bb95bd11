"""Systems written as equations in a config: validation, key-path errors (exit 2), resolution and
the objects built from them."""

from __future__ import annotations

import copy

import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from ude import cli
from ude.config import ConfigError, dump_config, validate_config
from ude.physics import Equations, LotkaVolterra
from ude.pipeline.builders import build_model, build_physics, build_truth, true_missing

BASE = {
    "truth": {
        "equations": {"x": "1.3*x - 0.9*x*y", "y": "-1.8*y + 0.8*x*y"},
        "y0": [0.44, 4.63],
    },
    "data": {"t_span": [0.0, 3.0], "dt": 0.1},
    "model": {
        "states": ["x", "y"],
        "known": {"x": "alpha*x", "y": "-gamma*y"},
        "parameters": {"alpha": 1.3, "gamma": {"value": 1.8, "trainable": True, "positive": True}},
        "network": {"inputs": ["x", "y"], "outputs": ["x", "y"], "width": 4, "depth": 1},
    },
}


def _edited(edit):
    raw = copy.deepcopy(BASE)
    edit(raw)
    return raw


def _messages(raw) -> list[str]:
    with pytest.raises(ConfigError) as e:
        validate_config(raw)
    return e.value.messages


BAD = [
    (
        lambda r: r["model"]["known"].update(x="alpha*z"),
        "model.known.x: unknown symbol 'z' in 'alpha*z'",
    ),
    (
        lambda r: r["model"]["known"].update(x="alpha*x +"),
        "model.known.x: cannot parse 'alpha*x +'",
    ),
    (lambda r: r["model"]["known"].update(y="(gamma*y"), "model.known.y: cannot parse '(gamma*y'"),
    (lambda r: r["model"]["known"].pop("y"), "model.known.y: state 'y' has no equation"),
    (
        lambda r: r["model"]["parameters"].update(eta=2.0),
        "model.parameters.eta: used in no equation",
    ),
    (
        lambda r: r["model"]["network"].update(inputs=["x", "q"]),
        "model.network.inputs[1]: unknown state 'q'",
    ),
    (
        lambda r: r["model"]["known"].update(x="foo(x)"),
        "model.known.x: unknown function 'foo'",
    ),
    (
        lambda r: r["model"]["known"].update(w="x"),
        "model.known.w: 'w' is not a state",
    ),
    (
        lambda r: r["truth"]["equations"].update(x="1.3*x - 0.9*x*w"),
        "truth.equations.x: unknown symbol 'w'",
    ),
    (
        lambda r: r["truth"].update(parameters={"k": 1.0}),
        "truth.parameters.k: used in no equation",
    ),
    (
        lambda r: r["model"].update(states=["y", "x"]),
        "model.states: the model's states ['y', 'x'] differ from the truth's ['x', 'y']",
    ),
    (
        lambda r: r["model"].update(system="lotka_volterra"),
        "model.system: not used when model.known is written as equations",
    ),
    (
        lambda r: r["truth"].update(system="lotka_volterra"),
        "truth.system: give either system (a shipped one) or equations",
    ),
    (
        lambda r: r["model"]["parameters"].update(gamma={"value": -1.0, "trainable": True}),
        "model.parameters.gamma: 'gamma' is constrained positive",
    ),
]


@pytest.mark.parametrize(
    "edit,expected", BAD, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(BAD)]
)
def test_bad_equations_name_the_key_path(edit, expected):
    messages = _messages(_edited(edit))
    assert any(m.startswith(expected) for m in messages), messages


@pytest.mark.parametrize("edit,expected", BAD[:6], ids=[m.split(":")[0] for _, m in BAD[:6]])
def test_bad_equations_exit_2(edit, expected, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_edited(edit), sort_keys=False))
    assert cli.main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_resolution_round_trips():
    cfg = validate_config(copy.deepcopy(BASE))
    m = cfg.model
    assert m.system is None and m.states == ["x", "y"]
    assert m.parameters == {"alpha": 1.3, "gamma": 1.8}
    assert m.trainable == ["gamma"] and m.is_positive("gamma")
    assert cfg.state_names == ("x", "y")
    assert cfg.spec.term_names == ("x: alpha*x", "y: -gamma*y")
    again = validate_config(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


def test_defaults_from_the_truth():
    # no states: the truth's; parameters the model's equations use may come from the truth
    raw = _edited(lambda r: r["model"].pop("states"))
    raw["truth"] = {
        "equations": {"x": "a*x - b*x*y", "y": "-c*y + d*x*y"},
        "parameters": {"a": 1.3, "b": 0.9, "c": 1.8, "d": 0.8},
        "y0": [0.44, 4.63],
    }
    raw["model"]["known"] = {"x": "a*x", "y": "-c*y"}
    raw["model"]["parameters"] = {}
    cfg = validate_config(raw)
    assert cfg.model.states == ["x", "y"] and cfg.model.parameters == {"a": 1.3, "c": 1.8}
    # the truth's terms by name become the model's equations
    raw["model"]["known"] = ["x: a*x", "y: -c*y"]
    cfg = validate_config(raw)
    assert cfg.model.known == {"x": {"x: a*x": "a*x"}, "y": {"y: -c*y": "-c*y"}}
    assert build_physics(cfg).formula() == {"x": "a*x", "y": "-c*y"}
    raw["model"]["known"] = "none"
    assert validate_config(raw).model.known == {"x": "0", "y": "0"}
    raw["model"]["known"] = ["x: a*q"]
    assert any("unknown term 'x: a*q'" in m for m in _messages(raw))


def test_real_data_with_equations(tmp_path):
    table = tmp_path / "d.tsv"
    ts = np.linspace(0, 1, 11)
    table.write_text("t\tu\tv\n" + "".join(f"{t}\t{1 + t}\t{2 - t}\n" for t in ts))
    raw = {
        "data": {"file": {"path": str(table), "states": ["u", "v"]}},
        "model": {"known": {"u": "k*u", "v": "0"}, "parameters": {"k": 0.5}},
        "train": {"stages": [{"kind": "adam", "lr": 0.01, "steps": 2}]},
    }
    cfg = validate_config(raw)
    assert cfg.state_names == ("u", "v") and cfg.model.parameters == {"k": 0.5}
    raw["model"]["known"] = {"u": "k*u*w", "v": "0"}
    assert any(m.startswith("model.known.u: unknown symbol 'w'") for m in _messages(raw))


def test_built_objects():
    cfg = validate_config(copy.deepcopy(BASE))
    truth, known = build_truth(cfg), build_physics(cfg)
    assert isinstance(truth, Equations) and isinstance(known, Equations)
    y = jnp.array([0.7, 2.1])
    ref = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
    np.testing.assert_allclose(truth(0.0, y), ref(0.0, y), rtol=1e-14)
    gamma = known.parameter("gamma")
    assert gamma.trainable and gamma.positive and not known.parameter("alpha").trainable
    missing = true_missing(cfg, truth)
    assert missing.formula() == {"x": "-0.9*x*y", "y": "0.8*x*y"}
    np.testing.assert_allclose(
        missing(0.0, y), ref.keep("predation", "reproduction")(0.0, y), rtol=1e-14
    )
    import jax.random as jr

    model = build_model(cfg, jr.key(0))
    assert model.state_names == ("x", "y") and model.known.formula() == known.formula()
    # nothing missing: no true missing term
    raw = _edited(lambda r: r["model"]["known"].update(x="1.3*x - 0.9*x*y", y="-1.8*y + 0.8*x*y"))
    raw["model"]["parameters"] = {}
    raw["model"]["trainable"] = []
    cfg = validate_config(raw)
    assert true_missing(cfg, build_truth(cfg)) is None


def test_named_truth_with_equations_model():
    raw = _edited(lambda r: None)
    raw["truth"] = {
        "system": "lotka_volterra",
        "parameters": {"alpha": 1.3, "beta": 0.9, "gamma": 1.8, "delta": 0.8},
        "y0": [0.44, 4.63],
    }
    cfg = validate_config(raw)
    missing = true_missing(cfg, build_truth(cfg))
    y = jnp.array([0.7, 2.1])
    expected = LotkaVolterra(1.3, 0.9, 1.8, 0.8).keep("predation", "reproduction")(0.0, y)
    np.testing.assert_allclose(missing(0.0, y), expected, rtol=1e-12)
