"""Fitting: losses, strategies, optimiser stages, the fused fit step, one host loop, checkpoints."""

from .._io import atomic_write_bytes as atomic_write_bytes, atomic_write_text as atomic_write_text
from .ensemble import EnsembleFitResult as EnsembleFitResult, fit_ensemble as fit_ensemble
from .fit import FitResult as FitResult, fit as fit, loss_value as loss_value
from .losses import l2_penalty as l2_penalty, squared_error as squared_error
from .stages import (
    LBFGS as LBFGS,
    AbstractStage as AbstractStage,
    Adam as Adam,
    growing_horizon as growing_horizon,
)
from .step import FitState as FitState
from .stepper import Stepper as Stepper
from .strategies import (
    AbstractStrategy as AbstractStrategy,
    Collocation as Collocation,
    LearnedInitialStates as LearnedInitialStates,
    MultipleShooting as MultipleShooting,
    SegmentStarts as SegmentStarts,
    SingleShooting as SingleShooting,
    WindowMinibatch as WindowMinibatch,
    fitted_initial_states as fitted_initial_states,
    initial_states as initial_states,
    smooth_derivatives as smooth_derivatives,
)
