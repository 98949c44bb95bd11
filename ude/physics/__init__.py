"""Known-physics modules."""

from .base import AbstractPhysics as AbstractPhysics
from .parameter import Parameter as Parameter
from .systems import (
    SIR as SIR,
    SYSTEMS as SYSTEMS,
    DampedPendulum as DampedPendulum,
    FitzHughNagumo as FitzHughNagumo,
    LotkaVolterra as LotkaVolterra,
    Lorenz as Lorenz,
    NoPhysics as NoPhysics,
    VanDerPol as VanDerPol,
)
