"""Known physics written as equations in text, parsed with SymPy into a JAX vector field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import equinox as eqx
import jax.numpy as jnp
import sympy

from ..equations import TIME, EquationError, ParsedEquations, parse_equations, text_of
from ..equations.lower import lower
from .base import AbstractPhysics
from .parameter import Parameter
from .signals import read_signals


class Equations(AbstractPhysics):
    """A right-hand side from text: ``{state: expression}`` with named parameters.

    Each additive term of an equation is a named term, ``"state: expression"`` (or the name given
    in the nested form ``{state: {name: expression}}``), so ``keep``/``drop``, ``formula()`` and
    discovery's reports work as for the shipped systems. Expressions may use the states, the
    parameters, time ``t``, numbers and ``exp log sqrt sin cos tan sinh cosh tanh asin acos atan
    abs min max pi``; ``x^2`` and ``x**2`` are both powers.

    ``inputs`` names input signals the equations read (``"-k*x + u"``): their values at ``t`` come
    from the :class:`~ude.data.inputs.InputSignal` passed as diffrax's ``args``.

    ``parameters`` maps each name to a number (a fixed constant) or a :class:`Parameter` (e.g.
    ``Parameter(1.8, trainable=True, positive=True)`` to learn it). Every parameter must appear
    in an equation and every symbol must be a state, a parameter or ``t``; otherwise a
    ``ValueError`` (an :class:`~ude.equations.EquationError`) names the state and the symbol.

    >>> import jax.numpy as jnp
    >>> known = Equations({"x": "alpha*x", "y": "-gamma*y"}, {"alpha": 1.3, "gamma": 1.8})
    >>> print(known(0.0, jnp.array([1.0, 2.0])))
    [ 1.3 -3.6]
    >>> known.term_names
    ('x: alpha*x', 'y: -gamma*y')
    """

    state_names: tuple[str, ...] = eqx.field(static=True)
    param_names: tuple[str, ...] = eqx.field(static=True)
    term_names: tuple[str, ...] = eqx.field(static=True)
    # per term (state index, SymPy expression); expressions hash by structure, so two equal
    # models have equal static parts (one compiled program) and a stable repr
    _exprs: tuple[tuple[int, sympy.Expr], ...] = eqx.field(static=True)
    params: dict[str, Parameter]
    include: tuple[str, ...] | None = eqx.field(static=True)
    input_names: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        equations: Mapping | ParsedEquations,
        parameters: Mapping[str, float | Parameter] | None = None,
        *,
        states: Sequence[str] | None = None,
        inputs: Sequence[str] = (),
        include: Sequence[str] | None = None,
    ):
        parameters = dict(parameters or {})
        inputs = tuple(inputs)
        clash = sorted(set(inputs) & set(parameters))
        if clash:
            raise ValueError(f"Equations: {clash} are named both as inputs and as parameters")
        if isinstance(equations, ParsedEquations):
            parsed = equations
            missing = [p for p in parsed.parameters if p not in parameters and p not in inputs]
            if missing:
                raise ValueError(f"Equations: no value for the parameter(s) {missing}")
        else:
            # inputs are symbols like parameters, read from the input signal (diffrax's args)
            parsed = parse_equations(
                equations, states=states, parameters=[*parameters, *inputs], check_unused=False
            )
            used = parsed.used_parameters()
            unused = [p for p in parameters if p not in used]
            if unused:
                raise EquationError(unused[0], f"parameter {unused[0]!r} is used in no equation")
        self.input_names = inputs
        self.state_names = parsed.states
        self.param_names = tuple(p for p in parsed.parameters if p not in inputs)
        self.term_names = parsed.term_names
        self._exprs = tuple((parsed.states.index(t.state), t.expr) for t in parsed.terms)
        self.params = {
            p: v if isinstance(v, Parameter) else Parameter(v)
            for p, v in ((p, parameters[p]) for p in self.param_names)
        }
        self.include = None if include is None else tuple(include)

    @property
    def term_formulas(self) -> dict[str, str]:
        return {
            name: f"{self.state_names[i]}: {text_of(e)}"
            for name, (i, e) in zip(self.term_names, self._exprs, strict=True)
        }

    @property
    def uses_time(self) -> bool:
        return any(sympy.Symbol(TIME) in e.free_symbols for _, e in self._exprs)

    def parameter(self, name: str) -> Parameter:
        if name not in self.params:
            raise ValueError(
                f"Equations: unknown parameter {name!r}; its parameters are {list(self.params)}"
            )
        return self.params[name]

    def sympy(self, names: Sequence[str] | None = None) -> dict[str, sympy.Expr]:
        """``{state: expression}`` of the active terms (those in ``names`` when given)."""
        names = self.active_terms if names is None else names
        out = {s: sympy.Integer(0) for s in self.state_names}
        for name, (i, e) in zip(self.term_names, self._exprs, strict=True):
            if name in names:
                out[self.state_names[i]] += e
        return out

    def _evaluate(self, exprs, t, y, signal=None):
        args = (TIME, *self.state_names, *self.param_names, *self.input_names)
        reader = "Equations: the equations read the inputs"
        u = read_signals(signal, self.input_names, t, reader) if self.input_names else ()
        values = (
            jnp.asarray(t, y.dtype),
            *(y[i] for i in range(len(self.state_names))),
            *(self.p(p).astype(y.dtype) for p in self.param_names),
            *(v.astype(y.dtype) for v in u),
        )
        return lower(exprs, args)(*values)

    def terms(self, t, y, args=None):
        outs = self._evaluate([e for _, e in self._exprs], t, y, args)
        n = len(self.state_names)
        return {
            name: jnp.zeros_like(y).at[i].set(v) if n > 1 else v[None]
            for name, (i, _), v in zip(self.term_names, self._exprs, outs, strict=True)
        }

    def __call__(self, t, y, args=None):
        # one expression per state (its active terms summed), not one vector per term
        per_state = self.sympy()
        return jnp.stack(self._evaluate([per_state[s] for s in self.state_names], t, y, args))
