"""Known-physics modules."""

from .base import AbstractPhysics as AbstractPhysics
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
