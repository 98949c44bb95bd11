"""Equation discovery: candidate libraries, sparse regressors, model selection, the symbolic and
vector-field forms of the result, and its refit through the solver."""

from .discover import PAPER_LAMS as PAPER_LAMS
from .discover import Discovery as Discovery
from .discover import discover as discover
from .discover import regress as regress
from .discover import ude_trajectory as ude_trajectory
from .discovered import DiscoveredModel as DiscoveredModel
from .library import AbstractLibrary as AbstractLibrary
from .library import CombinedLibrary as CombinedLibrary
from .library import CustomLibrary as CustomLibrary
from .library import PolynomialLibrary as PolynomialLibrary
from .library import TrigLibrary as TrigLibrary
from .library import library_from_spec as library_from_spec
from .library import paper_library as paper_library
from .refit import refit as refit
from .regressors import SR3 as SR3
from .regressors import STLSQ as STLSQ
from .regressors import AbstractRegressor as AbstractRegressor
from .regressors import BaggedRegressor as BaggedRegressor
from .regressors import BaggedResult as BaggedResult
from .regressors import sweep as sweep
from .selection import SELECTORS as SELECTORS
from .simulation import SimulationSelection as SimulationSelection
from .simulation import select_by_simulation as select_by_simulation
from .simulation import select_many as select_many
from .selection import pareto_stats as pareto_stats
from .selection import select as select
from .symbolic import coefficients_from_sympy as coefficients_from_sympy
from .symbolic import format_equations as format_equations
from .symbolic import parse_equations as parse_equations
from .symbolic import to_sympy as to_sympy
