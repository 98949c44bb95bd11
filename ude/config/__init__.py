"""Experiment configs: one YAML file describes a whole experiment, validated in full before work.

An experiment has the sections ``truth`` (a simulated system, or none when ``data.file`` names a
real table), ``data``, ``model``, ``solver``, ``train``, ``discovery``, ``evaluate``, ``output`` and
``parallel`` (see ``configs/*.yaml``). :func:`load_config` reads the file, applies ``--set``-style
overrides and validates with pydantic v2 (unknown keys are errors): every mistake — unknown keys
(with a "did you mean"), wrong types, out-of-range values and inconsistent combinations — is
collected and raised at once as a :class:`ConfigError` whose messages name their key paths::

    train.stages[1].lr: must be > 0, got -0.1
    model.known[0]: unknown term 'grwoth' of lotka_volterra (did you mean 'growth'?)

The result is fully resolved (defaults filled in, e.g. ``model.parameters`` from the truth), so
:func:`dump_config` writes a file that re-validates to the same config. This package holds numbers
and names only: it checks names against :mod:`ude.registry` and imports nothing of JAX.

Files: ``schema`` / ``schema_train`` (the sections, plain data), ``fields`` (their building
blocks), ``checks`` (cross-section checks), ``times`` (save times, training end), ``overrides``
(``--set``), ``yaml_io`` (YAML in and out), ``load`` (validate and load), ``messages`` (error text).
"""

from __future__ import annotations

from ..errors import ConfigError as ConfigError
from .load import (
    _section_models as _section_models,
    load_config as load_config,
    validate_config as validate_config,
)
from .overrides import apply_overrides as apply_overrides, parse_override as parse_override
from .schema import (
    SECTIONS as SECTIONS,
    DataConfig as DataConfig,
    EvaluateConfig as EvaluateConfig,
    ExperimentConfig as ExperimentConfig,
    FileConfig as FileConfig,
    ModelConfig as ModelConfig,
    NetworkConfig as NetworkConfig,
    NoiseConfig as NoiseConfig,
    OutputConfig as OutputConfig,
    ParallelConfig as ParallelConfig,
    SolverConfig as SolverConfig,
    TruthConfig as TruthConfig,
)
from .schema_train import (
    DiscoveryConfig as DiscoveryConfig,
    LamsConfig as LamsConfig,
    LibraryConfig as LibraryConfig,
    RefitConfig as RefitConfig,
    RegressorConfig as RegressorConfig,
    StageConfig as StageConfig,
    StrategyConfig as StrategyConfig,
    TrainConfig as TrainConfig,
)
from .times import data_end as data_end, time_grid as time_grid, train_end as train_end
from .yaml_io import describe as describe, dump_config as dump_config, read_yaml as read_yaml

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "load_config",
    "validate_config",
    "apply_overrides",
    "parse_override",
    "dump_config",
    "read_yaml",
    "describe",
    "time_grid",
    "train_end",
    "data_end",
]
