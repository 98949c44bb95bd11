"""The pipeline: config → data → model → fit → discover → refit → evaluate → figures, into a run
directory.

Words: a pipeline *stage* is one function that takes the validated
:class:`~ude.config.ExperimentConfig`, reads and writes its files in the run directory
(:mod:`~ude.pipeline.rundir`) and returns a typed outcome — data (:func:`prepare_data`), fit
(:func:`fit_model` → :class:`FitOutcome`), discover (:func:`discover_equations` →
:class:`DiscoveryOutcome`), evaluate (:func:`evaluate_run` → :class:`Evaluation`) and figures
(:func:`draw_figures`); each skips work whose output already exists. Inside the fit, *phases*
(pretrain, train, polish) run *optimiser stages* (``train.stages``: Adam, L-BFGS) made of
*steps*, one optimiser update each (history.csv has a row per step); a solver's own steps are
``solver.max_steps``.

* :mod:`~ude.pipeline.builders`: objects from a config (``build_data(cfg)``, ``build_model(cfg,
  key)``, ...), no files.
* :mod:`~ude.pipeline.rundir` and :mod:`~ude.pipeline.lock`: the run directory and its lock.
* :mod:`~ude.pipeline.dataset`, :mod:`~ude.pipeline.fit`, :mod:`~ude.pipeline.discover`,
  :mod:`~ude.pipeline.evaluate`, :mod:`~ude.pipeline.figures`: the stages
  (:mod:`~ude.pipeline.grid`: where models are solved after training).
* :mod:`~ude.pipeline.drivers`: :func:`run_experiment` (all stages), :func:`run_simulate`,
  :func:`run_discovery`, :func:`run_figures`.

Nothing here prints: progress goes to the ``log`` callback (and fit's tqdm bars when verbose).
"""

from .._io import json_safe as json_safe, read_history as read_history
from ..errors import (
    ConfigError as ConfigError,
    DataError as DataError,
    FitFailed as FitFailed,
    RunDirError as RunDirError,
    RunLocked as RunLocked,
)
from .builders import (
    build_data as build_data,
    build_eval_options as build_eval_options,
    build_lams as build_lams,
    build_library as build_library,
    build_mesh as build_mesh,
    build_model as build_model,
    build_noise as build_noise,
    build_options as build_options,
    build_phases as build_phases,
    build_physics as build_physics,
    build_regressor as build_regressor,
    build_stages as build_stages,
    build_strategy as build_strategy,
    build_truth as build_truth,
    member_keys as member_keys,
    member_train as member_train,
    split_data as split_data,
    true_missing as true_missing,
)
from .dataset import input_data as input_data, prepare_data as prepare_data
from .discover import DiscoveryOutcome as DiscoveryOutcome, discover_equations as discover_equations
from .drivers import (
    run_discovery as run_discovery,
    run_experiment as run_experiment,
    run_figures as run_figures,
    run_is_finished as run_is_finished,
    run_simulate as run_simulate,
)
from .evaluate import (
    Evaluation as Evaluation,
    ensemble_metrics as ensemble_metrics,
    evaluate_run as evaluate_run,
)
from .figures import draw_figures as draw_figures
from .fit import (
    EnsembleOutcome as EnsembleOutcome,
    FitOutcome as FitOutcome,
    fit_members as fit_members,
    fit_model as fit_model,
    fit_problem as fit_problem,
    fitted_y0 as fitted_y0,
)
from .grid import (
    evaluation_grid as evaluation_grid,
    evaluation_starts as evaluation_starts,
    trajectories as trajectories,
)
from .rundir import (
    FILES as FILES,
    default_run_dir as default_run_dir,
    load_run as load_run,
    locked_run_dir as locked_run_dir,
    prepare_run_dir as prepare_run_dir,
)
