"""Datasets: simulated ground truth + noise, observation masks, time windows, files and real tables.

Everything here produces one :class:`Dataset` pytree::

    truth = LotkaVolterra(1.3, 0.9, 1.8, 0.8)
    data = simulate(
        truth,
        jnp.array([0.44249296, 4.6280594]),
        jnp.linspace(0.0, 3.0, 31),
        noise=RelativeMeanNoise(0.05),
        key=1,
    )
    train, held_out = data.split(2.0)
    save(data, "runs/lv/data")  # runs/lv/data.npz + runs/lv/data.json
    data = load("runs/lv/data")
    hares = hudson_bay()  # the paper's real data, normalised

The ground truth is solved with its own diffrax call (Dopri8, rtol = atol = 1e-12, float64), kept
apart from :mod:`ude.solve`, the code under test. It needs float64: :func:`simulate` raises unless
``jax_enable_x64`` is on (switch it on at the start of the program; changing ``jax.config`` inside a
library call would silently change every other computation in the process).

One concept a file: :mod:`.dataset` (the pytree, windows, splits), :mod:`.provenance`,
:mod:`.masks`, :mod:`.noise`, :mod:`.truth` (:func:`simulate`), :mod:`.files` (npz + JSON
sidecar), :mod:`.tables` (TSV/CSV, Hudson Bay), :mod:`.inputs` (signals u(t), per-experiment
constants) and :mod:`.experiment_files` (long-format CSV/TSV of several experiments).
"""

from .dataset import Dataset as Dataset, concat as concat
from .experiment_files import (
    load_experiment_files as load_experiment_files,
    load_experiments as load_experiments,
    write_experiments as write_experiments,
)
from .files import FORMAT as FORMAT, FORMAT_VERSION as FORMAT_VERSION, load as load, save as save
from .inputs import (
    INTERPOLATIONS as INTERPOLATIONS,
    ExperimentInputs as ExperimentInputs,
    InputSignal as InputSignal,
    pad_signal as pad_signal,
    stack_inputs as stack_inputs,
)
from .masks import observation_mask as observation_mask
from .noise import (
    NOISES as NOISES,
    AbstractNoise as AbstractNoise,
    GaussianNoise as GaussianNoise,
    LogNormalNoise as LogNormalNoise,
    NoNoise as NoNoise,
    RelativeMeanNoise as RelativeMeanNoise,
    noise_from_dict as noise_from_dict,
)
from .tables import (
    HUDSON_BAY_PATH as HUDSON_BAY_PATH,
    hudson_bay as hudson_bay,
    load_table as load_table,
)
from .truth import simulate as simulate

__all__ = [
    "Dataset",
    "concat",
    "InputSignal",
    "ExperimentInputs",
    "stack_inputs",
    "simulate",
    "observation_mask",
    "AbstractNoise",
    "NoNoise",
    "GaussianNoise",
    "RelativeMeanNoise",
    "LogNormalNoise",
    "NOISES",
    "noise_from_dict",
    "save",
    "load",
    "load_table",
    "load_experiments",
    "load_experiment_files",
    "write_experiments",
    "hudson_bay",
    "HUDSON_BAY_PATH",
]
