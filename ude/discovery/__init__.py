"""Equation discovery: candidate libraries, sparse regressors, model selection, the symbolic and
vector-field forms of the result, its refit through the solver, and discovery over an ensemble of
trained UDEs."""

from .discover import (
    PAPER_LAMS as PAPER_LAMS,
    Discovery as Discovery,
    discover as discover,
    regress as regress,
    ude_trajectory as ude_trajectory,
)
from .discovered import DiscoveredModel as DiscoveredModel
from .ensemble import (
    coefficient_spread as coefficient_spread,
    discover_members as discover_members,
    ensemble_discover as ensemble_discover,
)
from .library import (
    AbstractLibrary as AbstractLibrary,
    CombinedLibrary as CombinedLibrary,
    CustomLibrary as CustomLibrary,
    ExpressionLibrary as ExpressionLibrary,
    PolynomialLibrary as PolynomialLibrary,
    TrigLibrary as TrigLibrary,
    expression_term as expression_term,
    library_from_spec as library_from_spec,
    paper_library as paper_library,
)
from .refit import refit as refit
from .regressors import (
    SR3 as SR3,
    STLSQ as STLSQ,
    AbstractRegressor as AbstractRegressor,
    BaggedRegressor as BaggedRegressor,
    BaggedResult as BaggedResult,
    sweep as sweep,
)
from .selection import SELECTORS as SELECTORS, pareto_stats as pareto_stats, select as select
from .simulation import (
    SimulationSelection as SimulationSelection,
    select_by_simulation as select_by_simulation,
    select_many as select_many,
)
from .symbolic import (
    coefficients_from_sympy as coefficients_from_sympy,
    format_equations as format_equations,
    parse_equations as parse_equations,
    to_sympy as to_sympy,
)
