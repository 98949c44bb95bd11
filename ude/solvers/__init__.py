"""ude's own diffrax solvers: a solver is its tableau as data plus a small class.

:mod:`ude.solvers.tsit5`: :class:`Tsit5` (diffrax's method with its stages written out) and
:class:`SaveTsit5` (the save times recorded inside the step); :func:`saved` reads the latter's
recorded states.
"""

from .tsit5 import (
    TSIT5_TABLEAU as TSIT5_TABLEAU,
    SaveTsit5 as SaveTsit5,
    Tsit5 as Tsit5,
    Tsit5Interpolation as Tsit5Interpolation,
    saved as saved,
)
