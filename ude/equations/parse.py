"""Equations as text → SymPy: named states, named parameters, one named term per additive part.

Pure SymPy (no JAX), so a config can be checked without building anything; :mod:`.lower` turns
the result into JAX. The namespace is explicit: the states, the parameters, ``t`` and the
functions in :data:`FUNCTIONS` — any other name is an error naming the symbol, never a SymPy
object (``gamma``, ``beta``, ``S``, ``I`` or ``E`` are plain symbols here, not SymPy's gamma
function, the ``S`` singleton or the imaginary unit).

>>> eqs = parse_equations(
...     {"x": "alpha*x - beta*x*y", "y": "-gamma*y + delta*x*y"},
...     parameters=["alpha", "beta", "gamma", "delta"],
... )
>>> eqs.term_names
('x: alpha*x', 'x: -beta*x*y', 'y: -gamma*y', 'y: delta*x*y')
"""

from __future__ import annotations

import ast
import dataclasses
import keyword
from collections.abc import Mapping, Sequence
from tokenize import TokenError

import sympy
from sympy.parsing.sympy_parser import (
    auto_number,
    auto_symbol,
    convert_xor,
    parse_expr,
    repeated_decimals,
)

from ..registry import SystemSpec

__all__ = [
    "FUNCTIONS",
    "TIME",
    "EquationError",
    "Term",
    "ParsedEquations",
    "parse_expression",
    "parse_terms",
    "library_term",
    "text_of",
    "parse_equations",
]

TIME = "t"
"""The name of time in an equation."""

FUNCTIONS: Mapping[str, object] = {
    "exp": sympy.exp,
    "log": sympy.log,
    "sqrt": sympy.sqrt,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "tanh": sympy.tanh,
    "asin": sympy.asin,
    "acos": sympy.acos,
    "atan": sympy.atan,
    "abs": sympy.Abs,
    "min": sympy.Min,
    "max": sympy.Max,
    "pi": sympy.pi,
}
"""The functions (and the constant ``pi``) an equation may use; powers are ``x^2`` or ``x**2``."""

# no implicit multiplication: "2x" is a parse error rather than a guess
_TRANSFORMS = (auto_symbol, repeated_decimals, auto_number, convert_xor)
# what the transformations' generated code refers to, and nothing more
_GLOBALS = {
    "Symbol": sympy.Symbol,
    "Integer": sympy.Integer,
    "Float": sympy.Float,
    "Rational": sympy.Rational,
    "Function": sympy.Function,
    # for the unevaluated parse that keeps the terms in the order written
    "Add": sympy.Add,
    "Mul": sympy.Mul,
    "Pow": sympy.Pow,
}


class EquationError(ValueError):
    """An equation that cannot be used. ``path`` names where, relative to the equations block
    (``"x"``, ``"x.growth"``, ``"alpha"``), ``problem`` says what; a config prefixes its key
    path."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


@dataclasses.dataclass(frozen=True)
class Term:
    """One additive term of a state's equation: its name, its state and its expression."""

    name: str
    state: str
    expr: sympy.Expr

    @property
    def text(self) -> str:
        return text_of(self.expr)


def text_of(expr) -> str:
    """An expression as text, numbers at their shortest (``0.5``, not ``0.500000000000000``)."""
    return sympy.sstr(expr, full_prec=False)


def _check_name(name, what: str, path: str) -> str:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise EquationError(path, f"{what} {name!r} is not a valid name (letters, digits, _)")
    if name == TIME:
        raise EquationError(path, f"{what} {name!r}: 't' is time and cannot be a {what}")
    if name in FUNCTIONS:
        raise EquationError(path, f"{what} {name!r} is the name of a function")
    return name


def parse_expression(
    text, names: Sequence[str], *, path: str = "", allowed_help: str | None = None
) -> sympy.Expr:
    """``text`` as a SymPy expression in the symbols ``names`` (and ``t``).

    Raises :class:`EquationError` (at ``path``) for a parse error, an unknown symbol or function,
    or a value that is not finite."""
    return sympy.Add(*parse_terms(text, names, path=path, allowed_help=allowed_help))


def parse_terms(
    text, names: Sequence[str], *, path: str = "", allowed_help: str | None = None
) -> list[sympy.Expr]:
    """The additive terms of ``text`` in the order written (``"-g*y + d*x*y"`` gives ``-g*y`` then
    ``d*x*y``; brackets stay one term), terms that are zero left out; checked as
    :func:`parse_expression` says."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise EquationError(path, f"must be an expression (text or a number), got {text!r}")
    text = str(text)
    if not text.strip():
        raise EquationError(path, "is empty; write 0 for no term")
    problem = _syntax_problem(text)
    if problem:
        raise EquationError(path, f"cannot parse {text!r}: {problem}")
    local = {n: sympy.Symbol(n) for n in names}
    local[TIME] = sympy.Symbol(TIME)
    namespace = dict(_GLOBALS)
    namespace.update(FUNCTIONS)
    try:
        raw = parse_expr(
            text,
            local_dict=local,
            global_dict=namespace,
            transformations=_TRANSFORMS,
            evaluate=False,
        )
        pieces = [piece.doit() for piece in _flatten(raw)] if isinstance(raw, sympy.Basic) else []
    except TokenError:
        raise EquationError(path, f"cannot parse {text!r}: unbalanced brackets") from None
    except (SyntaxError, TypeError, ValueError, AttributeError) as e:
        detail = getattr(e, "msg", None) or str(e) or type(e).__name__
        raise EquationError(path, f"cannot parse {text!r}: {detail}") from None
    if not isinstance(raw, sympy.Expr) or not all(isinstance(p, sympy.Expr) for p in pieces):
        raise EquationError(path, f"{text!r} is not an expression")
    expr = sympy.Add(*pieces)
    unknown_functions = sorted(str(f.func) for f in expr.atoms(sympy.core.function.AppliedUndef))
    if unknown_functions:
        raise EquationError(
            path,
            f"unknown function {unknown_functions[0]!r} in {text!r}; the functions are "
            f"{', '.join(k for k in FUNCTIONS if k != 'pi')}",
        )
    unknown = sorted(str(s) for s in expr.free_symbols if str(s) not in local)
    if unknown:
        what = allowed_help or f"the names are {', '.join(list(names) + [TIME])}"
        raise EquationError(path, f"unknown symbol {unknown[0]!r} in {text!r}; {what}")
    bad = (sympy.zoo, sympy.oo, -sympy.oo, sympy.nan, sympy.I)
    if any(p.has(*bad) for p in pieces) or expr.has(*bad):
        raise EquationError(path, f"{text!r} is not a finite real expression")
    return [p for p in pieces if p != 0]


def library_term(text, state_names: Sequence[str], *, path: str = "") -> tuple[str, sympy.Expr]:
    """One candidate term of a discovery library written as text (``"y/(1 + y)"``) →
    ``(name, expr)``, the name being the normalised text (``"y/(y + 1)"``, powers as ``x^2``).

    Raises :class:`EquationError` (at ``path``) for a parse error, an unknown function or symbol,
    time ``t``, zero, a constant factor (``2*x``: the regression fits the coefficient) or a sum
    (``x*(1 + y)``: list ``x`` and ``x*y`` separately). Pure SymPy, so a config is checked by the
    same rules as :class:`ude.discovery.ExpressionLibrary`."""
    states = tuple(state_names)
    where = f"the states are {', '.join(states)} (time t is not allowed)"
    expr = parse_expression(text, states, path=path, allowed_help=where)
    if TIME not in states and sympy.Symbol(TIME) in expr.free_symbols:
        raise EquationError(
            path, f"{text!r} uses time t; library terms are functions of the states"
        )
    if expr == 0:
        raise EquationError(path, f"{text!r} is zero")
    const, rest = expr.as_independent(*(sympy.Symbol(s) for s in states), as_Add=False)
    if const != 1:
        raise EquationError(
            path,
            f"{text!r} has the constant factor {sympy.sstr(const)}; write "
            f"{_term_name(rest)!r} (the regression fits the coefficient and its sign)",
        )
    expanded = sympy.expand(expr)
    if expanded.is_Add:
        parts = ", ".join(repr(_term_name(a)) for a in sympy.Add.make_args(expanded))
        raise EquationError(path, f"{text!r} is a sum; list its terms separately: {parts}")
    return _term_name(expr), expr


def _term_name(expr) -> str:
    return sympy.sstr(expr).replace("**", "^")


_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)


def _syntax_problem(text: str) -> str | None:
    """What makes ``text`` more than one arithmetic expression (None when it is one): checked on
    Python's syntax tree before SymPy evaluates anything, so ``"x; q"``, ``"x = 2*x"``, ``"x > 1"``
    or an attribute access are errors, never silently cut or run."""
    try:
        tree = ast.parse(text.replace("^", "**").strip(), mode="eval")
    except SyntaxError as e:
        if "was never closed" in str(e) or "unmatched" in str(e):
            return "unbalanced brackets"
        return "invalid syntax"
    for node in ast.walk(tree.body):
        if isinstance(node, (ast.BinOp, ast.UnaryOp)):
            if not isinstance(node.op, _OPERATORS):
                return f"the operator {type(node.op).__name__} is not arithmetic (+ - * / ^)"
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.keywords:
                return "only plain function calls such as exp(x) are allowed"
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                return f"{node.value!r} is not a number"
        elif not isinstance(node, (ast.Name, ast.Load, *_OPERATORS)):
            return f"{type(node).__name__.lower()} is not allowed in an equation"
    return None


def _flatten(expr) -> list:
    """The arguments of a (nested, unevaluated) sum, in order."""
    if isinstance(expr, sympy.Add):
        return [piece for arg in expr.args for piece in _flatten(arg)]
    return [expr]


@dataclasses.dataclass(frozen=True)
class ParsedEquations:
    """A right-hand side parsed from text: ``states`` in order, ``parameters`` by name, and the
    named additive ``terms`` of every equation (a state with no term has the equation 0)."""

    states: tuple[str, ...]
    parameters: tuple[str, ...]
    terms: tuple[Term, ...]
    inputs: tuple[str, ...] = ()

    @property
    def term_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.terms)

    def used_parameters(self, names: Sequence[str] | None = None) -> set[str]:
        """The parameters that appear in the terms (those in ``names`` when given)."""
        symbols = set()
        for t in self.terms:
            if names is None or t.name in names:
                symbols |= {str(s) for s in t.expr.free_symbols}
        return {p for p in self.parameters if p in symbols}

    def spec(self, name: str = "equations") -> SystemSpec:
        """A :class:`~ude.registry.SystemSpec`, so config checks treat it like a shipped system."""
        return SystemSpec(
            name,
            self.states,
            self.parameters,
            self.term_names,
            {t.name: f"{t.state}: {t.text}" for t in self.terms},
        )


def parse_equations(
    equations: Mapping,
    *,
    states: Sequence[str] | None = None,
    parameters: Sequence[str] = (),
    check_unused: bool = True,
    inputs: Sequence[str] = (),
) -> ParsedEquations:
    """Parse ``{state: expression}`` (or ``{state: {term name: expression}}``) into named terms.

    ``states`` fixes the state order (default: the keys' order); every state needs an equation
    (``"0"`` for none). ``parameters`` are the names the
    expressions may use besides the states and ``t``; with ``check_unused`` each must appear
    somewhere. ``inputs`` are names of the experiments' inputs (signals ``u(t)``, constants) the
    expressions may read too; they are not parameters. A term is named ``"state: expression"``
    unless the nested form names it. Raises
    :class:`EquationError` with the path of the first problem.
    """
    if not isinstance(equations, Mapping) or not equations:
        raise EquationError("", f"must map each state to its equation, got {equations!r}")
    state_list = list(states) if states is not None else list(equations)
    for s in state_list:
        _check_name(s, "state", str(s))
    if len(set(state_list)) != len(state_list):
        raise EquationError("", f"states are listed twice: {state_list}")
    params = []
    for p in parameters:
        _check_name(p, "parameter", str(p))
        if p in state_list:
            raise EquationError(str(p), f"parameter {p!r} has the name of a state")
        params.append(p)
    for s in equations:
        if s not in state_list:
            raise EquationError(
                str(s), f"{s!r} is not a state; the states are {', '.join(state_list)}"
            )
    for s in state_list:
        if s not in equations:
            raise EquationError(
                str(s), f'state {s!r} has no equation (write {s}: "0" if nothing is known)'
            )
    inputs = [str(u) for u in inputs if u not in params]
    for u in inputs:
        _check_name(u, "input", u)
        if u in state_list:
            raise EquationError(u, f"input {u!r} has the name of a state")
    names = state_list + params + inputs
    help_text = (
        f"the states are {', '.join(state_list)}, the parameters "
        f"{', '.join(params) if params else '(none)'}"
        + (f", the inputs {', '.join(inputs)}" if inputs else "")
        + " and time is t"
    )
    terms: list[Term] = []
    for s in state_list:
        value = equations[s]
        if isinstance(value, Mapping):
            for term_name, text in value.items():
                if not isinstance(term_name, str) or not term_name:
                    raise EquationError(f"{s}", f"term names must be text, got {term_name!r}")
                expr = parse_expression(
                    text, names, path=f"{s}.{term_name}", allowed_help=help_text
                )
                terms.append(Term(term_name, s, expr))
        else:
            for part in parse_terms(value, names, path=s, allowed_help=help_text):
                terms.append(Term(f"{s}: {text_of(part)}", s, part))
    seen = set()
    for t in terms:
        if t.name in seen:
            raise EquationError(t.state, f"term {t.name!r} appears twice")
        seen.add(t.name)
    parsed = ParsedEquations(tuple(state_list), tuple(params), tuple(terms), tuple(inputs))
    if check_unused:
        unused = [p for p in params if p not in parsed.used_parameters()]
        if unused:
            raise EquationError(unused[0], f"parameter {unused[0]!r} is used in no equation")
    return parsed
