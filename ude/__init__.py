"""ude — universal differential equations in JAX.

Known physics + neural corrections (:mod:`ude.physics`, :mod:`ude.nn`, :mod:`ude.model`), solved
with diffrax (:mod:`ude.solve`), fitted with optax (:mod:`ude.train`), turned back into equations
(:mod:`ude.discovery`) and evaluated by extrapolation (:mod:`ude.evaluate`); :mod:`ude.pipeline`
runs a whole experiment from a config (:func:`run_experiment`).
"""

from . import (
    config as config,
    data as data,
    discovery as discovery,
    errors as errors,
    evaluate as evaluate,
    model as model,
    nn as nn,
    physics as physics,
    pipeline as pipeline,
    registry as registry,
    train as train,
)
from .config import (
    ExperimentConfig as ExperimentConfig,
    load_config as load_config,
)
from .data import (
    Dataset as Dataset,
    GaussianNoise as GaussianNoise,
    LogNormalNoise as LogNormalNoise,
    NoNoise as NoNoise,
    RelativeMeanNoise as RelativeMeanNoise,
    hudson_bay as hudson_bay,
    load_table as load_table,
    simulate as simulate,
)
from .discovery import (
    SR3 as SR3,
    STLSQ as STLSQ,
    BaggedRegressor as BaggedRegressor,
    DiscoveredModel as DiscoveredModel,
    Discovery as Discovery,
    PolynomialLibrary as PolynomialLibrary,
    TrigLibrary as TrigLibrary,
    discover as discover,
    paper_library as paper_library,
    refit as refit,
    select_by_simulation as select_by_simulation,
)
from .errors import (
    ConfigError as ConfigError,
    DataError as DataError,
    FitFailed as FitFailed,
    RunDirError as RunDirError,
    UdeError as UdeError,
)
from .model import (
    UDE as UDE,
    HybridUDE as HybridUDE,
    partition as partition,
    trainable_filter as trainable_filter,
)
from .nn import MLP as MLP, rbf as rbf
from .physics import (
    SIR as SIR,
    AbstractPhysics as AbstractPhysics,
    DampedPendulum as DampedPendulum,
    Equations as Equations,
    FitzHughNagumo as FitzHughNagumo,
    Lorenz as Lorenz,
    LotkaVolterra as LotkaVolterra,
    NoPhysics as NoPhysics,
    Parameter as Parameter,
    VanDerPol as VanDerPol,
    VectorField as VectorField,
    as_physics as as_physics,
)
from .pipeline import run_experiment as run_experiment
from .solve import Solution as Solution, SolverOptions as SolverOptions, solve as solve
from .solvers import Tsit5 as Tsit5
from .train import (
    LBFGS as LBFGS,
    Adam as Adam,
    Collocation as Collocation,
    FitResult as FitResult,
    FitState as FitState,
    LearnedInitialStates as LearnedInitialStates,
    MultipleShooting as MultipleShooting,
    SegmentStarts as SegmentStarts,
    SingleShooting as SingleShooting,
    Stepper as Stepper,
    WindowMinibatch as WindowMinibatch,
    fit as fit,
    fitted_initial_states as fitted_initial_states,
    growing_horizon as growing_horizon,
    loss_value as loss_value,
)
from .train.ensemble import EnsembleFitResult as EnsembleFitResult, fit_ensemble as fit_ensemble

__version__ = "0.1.0"
