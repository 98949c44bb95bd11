"""Experiment configs: validation messages (key path + text), overrides, YAML round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from ude.config import (
    ConfigError,
    apply_overrides,
    describe,
    dump_config,
    load_config,
    parse_override,
    read_yaml,
    validate_config,
)

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
BASE = CONFIGS[0].parent / "lotka_volterra.yaml"


@pytest.fixture(scope="module")
def base_raw():
    return read_yaml(BASE.read_text())


def _errors(raw) -> list[str]:
    with pytest.raises(ConfigError) as e:
        validate_config(raw)
    return e.value.messages


# (overrides applied to configs/lotka_volterra.yaml, expected messages — each one must appear)
BROKEN = [
    (["train.stages[1].lr=-0.1"], ["train.stages[1].lr: must be > 0, got -0.1"]),
    (["train.stages[0].lr=-0.1"], ["train.stages[0].lr: must be > 0, got -0.1"]),
    (["train.stages[1].lr=0.01"], ["train.stages[1].lr: L-BFGS takes no learning rate"]),
    (["train.stages[0].gtol=1.0e-6"], ["train.stages[0].gtol: not used by Adam (only by L-BFGS)"]),
    (["train.stages[0].steps=2.5"], ["train.stages[0].steps: must be an integer, got 2.5"]),
    (
        ["train.stages[0].kind=adamw"],
        ["train.stages[0].kind: must be one of 'adam' or 'lbfgs', got 'adamw'"],
    ),
    (["train.stages=[]"], ["train.stages: must have at least 1 item(s), got 0"]),
    (["trian.chunk=5"], ["trian: unknown key (did you mean 'train'?)"]),
    (["train.stagse=[]"], ["train.stagse: unknown key (did you mean 'stages'?)"]),
    (["solver.rtoll=1.0e-6"], ["solver.rtoll: unknown key (did you mean 'rtol'?)"]),
    (["solver.rtol=fast"], ["solver.rtol: must be a number, got 'fast'"]),
    (["solver.rtol=0"], ["solver.rtol: must be > 0, got 0"]),
    (["solver.name=tsti5"], ["solver.name: unknown solver 'tsti5' (did you mean 'tsit5'?)"]),
    (
        ["solver.dtype=float16"],
        ["solver.dtype: must be one of 'float32' or 'float64', got 'float16'"],
    ),
    (
        ["model.known=[grwoth, death]"],
        ["model.known[0]: unknown term 'grwoth' of lotka_volterra (did you mean 'growth'?)"],
    ),
    (
        ["model.known=some"],
        [
            "model.known: must be 'all', 'none', a list of term names or equations "
            "{state: expression}, got 'some'"
        ],
    ),
    (
        ["model.trainable=[gama]"],
        ["model.trainable[0]: unknown parameter 'gama' of lotka_volterra (did you mean 'gamma'?)"],
    ),
    (
        ["model.trainable=[beta]"],
        ["model.trainable[0]: 'beta' appears in no known term (growth, death)"],
    ),
    (
        ["model.network.activation=rbff"],
        ["model.network.activation: unknown activation 'rbff' (did you mean 'rbf'?)"],
    ),
    (
        ["model.network.activation=[rbf, tanh]"],
        ["model.network.activation: lists 2 activations for depth 3"],
    ),
    (["model.network.width=0"], ["model.network.width: must be >= 1, got 0"]),
    (["model.network.outputs=[z]"], ["model.network.outputs[0]: unknown state 'z'"]),
    (
        ["model.network=null", "model.trainable=[]"],
        [
            "model: nothing to train: network is null and trainable is empty",
            "discovery.enabled: discovery regresses the network's output, "
            "but model.network is null",
        ],
    ),
    (["model.system=sir"], ["model.system: 'sir' differs from truth.system 'lotka_volterra'"]),
    (["truth.system=lotka"], ["truth.system: unknown system 'lotka'"]),
    (
        ["truth.parameters.betta=0.9"],
        ["truth.parameters.betta: unknown parameter of lotka_volterra (did you mean 'beta'?)"],
    ),
    (["truth.y0=[1.0, 2.0, 3.0]"], ["truth.y0: must have 2 values (x, y), got 3"]),
    (["data.observe.z=[0.0]"], ["data.observe.z: unknown state; states are x, y"]),
    (["data.observe.y=[0.05]"], ["data.observe.y[0]: time 0.05 is not a save time"]),
    (
        ["data.observe.y=sometimes"],
        ["data.observe.y: must be 'all', 'none' or a list of save times, got 'sometimes'"],
    ),
    (["data.held_out=[1.0, 3.0]"], ["data.held_out: starts at 1.0, before the training end 3.0"]),
    (
        ["data.train_end=2.0", "data.held_out=[1.5, 3.0]"],
        ["data.held_out: starts at 1.5, before the training end 2.0"],
    ),
    (["data.train_end=9.0"], ["data.train_end: must lie in the data span (0.0, 3.0], got 9.0"]),
    (["data.dt=0.07"], ["data.dt: 0.07 does not divide the span [0.0, 3.0] into whole steps"]),
    (["data.samples=31"], ["data.dt: give exactly one of dt (sample spacing) and samples (count)"]),
    (
        ["data.t_span=[3.0, 0.0]"],
        ["data.t_span: must be [start, end] with end > start, got [3.0, 0.0]"],
    ),
    (
        ["data.noise.kind=gaussian"],
        [
            "data.noise.sigma: required for noise kind 'gaussian'",
            "data.noise.level: not used by noise kind 'gaussian' (it takes sigma)",
        ],
    ),
    (["data.noise.level=-0.05"], ["data.noise.level: must be >= 0, got -0.05"]),
    (
        ["train.strategy.kind=multiple_shooting", "train.strategy.segments=40"],
        [
            "train.strategy.segments: 40 segments need at least 41 samples; "
            "the training window has 31"
        ],
    ),
    (
        ["train.strategy.segments=4"],
        ["train.strategy.segments: not used by single_shooting (only by multiple_shooting)"],
    ),
    (
        ["train.strategy.kind=window_minibatch", "train.strategy.window=50"],
        ["train.strategy.window: 50 samples exceed the 31 of the training window"],
    ),
    (
        ["train.strategy.weights=[1.0]"],
        ["train.strategy.weights: give one weight per state (2), got 1"],
    ),
    (
        ["train.stages[0].horizon=5.0"],
        ["train.stages[0].horizon: must be <= the training end 3.0, got 5.0"],
    ),
    (["discovery.lams=[0.1, -1.0]"], ["discovery.lams.values[1]: must be >= 0, got -1.0"]),
    (
        ["discovery.regressor.alpha=0.1"],
        ["discovery.regressor.alpha: not used by sr3 (only by stlsq)"],
    ),
    (["discovery.states=[z]"], ["discovery.states[0]: 'z' is not a network output (x, y)"]),
    (
        ["discovery.refit.train_known=[beta]"],
        ["discovery.refit.train_known[0]: 'beta' appears in no known term"],
    ),
    (
        ["discovery.library[0].functions=[sin]"],
        ["discovery.library[0].functions: not used by polynomial (only by trig)"],
    ),
    (["evaluate.t_end=1.0"], ["evaluate.t_end: must be >= the training end 3.0, got 1.0"]),
    (
        ["output.formats=[png, jpg]"],
        ["output.formats[1]: must be one of 'png', 'pdf' or 'svg', got 'jpg'"],
    ),
    (["truth=null"], ["truth: required unless data.file names a real data table"]),
    (
        ["data.file={path: nowhere.tsv, states: [a, b]}"],
        ["data.file.path: file not found: nowhere.tsv"],
    ),
]


@pytest.mark.parametrize("overrides,expected", BROKEN, ids=[" ".join(o) for o, _ in BROKEN])
def test_broken_config_reports_key_path(base_raw, overrides, expected):
    messages = _errors(apply_overrides(base_raw, overrides))
    for want in expected:
        assert any(m.startswith(want) for m in messages), (want, messages)


def test_every_problem_is_reported_at_once(base_raw):
    raw = apply_overrides(
        base_raw,
        [
            "train.stages[1].lr=0.1",
            "solver.rtol=-1.0",
            "model.known=[growth, deaht]",
            "data.observe.q=all",
            "evaluate.dtt=0.1",
        ],
    )
    messages = _errors(raw)
    assert len(messages) == 5, messages
    assert [m.split(":")[0] for m in messages] == [
        "solver.rtol",
        "train.stages[1].lr",
        "evaluate.dtt",
        "model.known[1]",
        "data.observe.q",
    ]


def test_cross_checks_run_when_another_section_is_invalid(base_raw):
    # the train section is broken, yet the model/truth cross-check still runs
    raw = apply_overrides(base_raw, ["train.chunk=0", "model.known=[grwoth]"])
    messages = _errors(raw)
    assert any(m.startswith("train.chunk: must be >= 1, got 0") for m in messages)
    assert any(m.startswith("model.known[0]: unknown term 'grwoth'") for m in messages)


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="must be a mapping"):
        validate_config([1, 2])


def test_config_error_is_the_one_of_ude_errors():
    # one class wherever it is imported from, so the command line maps it to its exit code
    from ude import errors

    assert ConfigError is errors.ConfigError
    with pytest.raises(errors.UdeError) as e:
        validate_config([1, 2])
    assert errors.exit_code(e.value) == errors.EXIT_USAGE
    assert isinstance(e.value, ValueError) and e.value.source is None


def test_real_data_needs_system_and_parameters(tmp_path):
    raw = read_yaml((CONFIGS[0].parent / "hudson_bay.yaml").read_text())
    raw["data"]["file"]["path"] = str(CONFIGS[0].parent.parent / "data" / "hudson_bay.tsv")
    messages = _errors(apply_overrides(raw, ["model.system=null", "truth.system=lotka_volterra"]))
    assert any(m.startswith("truth.y0: required key is missing") for m in messages)
    messages = _errors(
        apply_overrides(raw, ["model.system=null", "truth.system=lotka_volterra", "truth.y0=[1,2]"])
    )
    assert any(m.startswith("truth.parameters: missing 'alpha'") for m in messages), messages
    messages = _errors(apply_overrides(raw, ["model.system=null"]))
    assert messages == [
        "model.system: required with data.file (there is no truth system to take it from)"
    ]
    raw2 = apply_overrides(raw, ["model.parameters={alpha: 0.5}"])
    assert _errors(raw2) == [
        "model.parameters: missing 'gamma' (used by the known terms; with real "
        "data there is no truth to take them from)"
    ]


# ---- overrides ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,path,value",
    [
        ("train.stages[0].steps=5", ["train", "stages", 0, "steps"], 5),
        ("solver.rtol=1e-8", ["solver", "rtol"], 1e-8),
        ("model.known=[growth, death]", ["model", "known"], ["growth", "death"]),
        ("model.network=null", ["model", "network"], None),
        ("output.figures=false", ["output", "figures"], False),
        ("name=abc", ["name"], "abc"),
        ("a.b[1][2].c=x", ["a", "b", 1, 2, "c"], "x"),
    ],
)
def test_parse_override(text, path, value):
    assert parse_override(text) == (path, value)


@pytest.mark.parametrize(
    "text,message",
    [
        ("train.stages[0].steps", "expected KEY=VALUE"),
        ("train..steps=3", "cannot parse the key path"),
        ("[0].x=3", "cannot parse the key path"),
        ("solver.rtol=[1, 2", "the value is not valid YAML"),
    ],
)
def test_bad_override(text, message):
    with pytest.raises(ValueError, match=message):
        parse_override(text)


def test_overrides_fill_default_lists_and_refuse_bad_indices(base_raw):
    raw = apply_overrides(base_raw, ["discovery.refit.stages[0].steps=7"])
    cfg = validate_config(raw)
    assert cfg.discovery.refit.stages[0].steps == 7
    assert cfg.discovery.refit.stages[0].kind == "lbfgs"
    with pytest.raises(ConfigError) as e:
        apply_overrides(base_raw, ["train.stages[5].steps=1", "solver.rtol.x=1"])
    assert e.value.messages == [
        "--set 'train.stages[5].steps=1': train.stages has 2 entries, no index 5",
        "--set 'solver.rtol.x=1': solver.rtol is 1e-06, not a mapping",
    ]


def test_overrides_are_validated_like_the_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(BASE, ["train.stages[1].lr=-0.1", "solver.atol=abc"])
    assert e.value.source == str(BASE)
    assert e.value.messages == [
        "solver.atol: must be a number, got 'abc'",
        "train.stages[1].lr: must be > 0, got -0.1",
    ]


def test_yaml_errors_name_the_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("truth:\n  system: [lotka\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: invalid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_scientific_notation_is_a_float():
    assert read_yaml("a: 1e-6\nb: 2.5E+3\nc: 1\nd: '1e-6'") == {
        "a": 1e-6,
        "b": 2500.0,
        "c": 1,
        "d": "1e-6",
    }


# ---- shipped configs --------------------------------------------------------------------------
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_round_trips(path, tmp_path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert describe(path.read_text()) == cfg.description and cfg.description
    text = dump_config(cfg)
    assert text.startswith(f"# {cfg.description}\n")
    (tmp_path / "config.yaml").write_text(text)
    again = load_config(tmp_path / "config.yaml")
    assert again.model_dump() == cfg.model_dump()


def test_lotka_volterra_is_the_papers_scenario_1():
    cfg = load_config(BASE)
    assert cfg.truth.y0 == [[0.44249296, 4.6280594]]
    assert cfg.truth.parameters == {"alpha": 1.3, "beta": 0.9, "gamma": 1.8, "delta": 0.8}
    assert (cfg.data.t_span, cfg.data.dt) == ((0.0, 3.0), 0.1)
    assert (cfg.data.noise.kind, cfg.data.noise.level) == ("relative_mean", 0.05)
    assert cfg.model.known == ["growth", "death"] and cfg.model.trainable == []
    net = cfg.model.network
    assert (net.width, net.depth, net.activation, net.init) == (5, 3, ["rbf"] * 3, "glorot")
    assert [(s.kind, s.steps, s.lr) for s in cfg.train.stages] == [
        ("adam", 200, 0.1),
        ("lbfgs", 1000, None),
    ]
    assert cfg.train.strategy.loss == "sse"
    assert (cfg.solver.name, cfg.solver.rtol, cfg.solver.atol, cfg.solver.dtype) == (
        "tsit5",
        1e-6,
        1e-6,
        "float64",
    )
    assert [(p.kind, p.degree, p.functions) for p in cfg.discovery.library] == [
        ("polynomial", 5, None),
        ("trig", None, ["sin"]),
    ]
    lm = cfg.discovery.lams
    assert (lm.log10_start, lm.log10_stop, lm.log10_step) == (-7.0, 5.0, 0.1)
    assert cfg.discovery.dt == 0.05
    assert cfg.evaluate.t_end == 50.0
    # resolved defaults
    assert cfg.model.system == "lotka_volterra"
    assert cfg.model.parameters == cfg.truth.parameters
    assert cfg.data.train_end == 3.0
