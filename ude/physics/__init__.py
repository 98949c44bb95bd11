"""Known-physics modules: the shipped systems, equations as text (:class:`Equations`) and any
vector field of the user's (:class:`VectorField`, what :func:`as_physics` wraps a callable in)."""

from .base import AbstractPhysics as AbstractPhysics
from .equations import Equations as Equations
from .parameter import Parameter as Parameter
from .systems import (
    SIR as SIR,
    SYSTEMS as SYSTEMS,
    DampedPendulum as DampedPendulum,
    FitzHughNagumo as FitzHughNagumo,
    Lorenz as Lorenz,
    LotkaVolterra as LotkaVolterra,
    NoPhysics as NoPhysics,
    VanDerPol as VanDerPol,
)
from .wrapped import VectorField as VectorField, as_physics as as_physics
