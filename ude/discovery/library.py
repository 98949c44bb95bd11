"""Candidate-term libraries Θ(y) for sparse regression: monomials, sin/cos, terms written as text
(``"y/(1 + y)"``), user functions.

A library maps states ``Y: (n, state)`` (or one state ``(state,)``) to the candidate terms
``Θ: (n, terms)`` (or ``(terms,)``) and names every column with a SymPy-parseable string built from
the state names (``"1"``, ``"x"``, ``"x*y"``, ``"x^2*y"``, ``"sin(x)"``). Libraries hold no arrays,
only static structure, so they sit inside models without adding trainable leaves. ``+`` joins
libraries; the paper's library is::

    PolynomialLibrary(("x", "y"), degree=5) + TrigLibrary(
        ("x", "y"), functions=("sin",)
    )  # 23 terms
With inputs ``u(t)`` (SINDYc) a library is built over states and inputs, and
:class:`InputLibrary` says which are inputs (and may keep only state, input or cross terms).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence

import equinox as eqx
import jax.numpy as jnp
import sympy

from .._types import Array, ArrayLike, Float
from ..equations.lower import lower
from ..equations.parse import EquationError, library_term
from .symbolic import term_to_sympy, term_variables

TRIG: dict[str, Callable] = {"sin": jnp.sin, "cos": jnp.cos}


class AbstractLibrary(eqx.Module):
    """``Θ(Y)``: columns are candidate terms, named by :attr:`names`."""

    state_names: eqx.AbstractVar[tuple[str, ...]]

    @property
    def names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _columns(self, Y: Float[Array, "n state"]) -> list[Array]:
        raise NotImplementedError

    @property
    def input_names(self) -> tuple[str, ...]:
        """The variables that are inputs ``u(t)``, not states (none unless declared by
        :class:`InputLibrary`)."""
        return ()

    @property
    def n_terms(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return self.n_terms

    def __call__(self, Y: Float[ArrayLike, "*n state"]) -> Float[Array, "*n terms"]:
        """Evaluate every term at ``Y`` of shape ``(n, state)`` or ``(state,)``."""
        Y = jnp.asarray(Y)
        if Y.ndim not in (1, 2) or Y.shape[-1] != len(self.state_names):
            raise ValueError(
                f"{type(self).__name__}: Y must have shape (n, {len(self.state_names)}) "
                f"or ({len(self.state_names)},), got {Y.shape}"
            )
        single = Y.ndim == 1
        Y2 = Y[None] if single else Y
        cols = self._columns(Y2)
        out = jnp.stack([jnp.broadcast_to(c, Y2.shape[:1]).astype(Y2.dtype) for c in cols], axis=-1)
        return out[0] if single else out

    def __add__(self, other: AbstractLibrary) -> CombinedLibrary:
        if not isinstance(other, AbstractLibrary):
            return NotImplemented
        return CombinedLibrary((self, other))


def _check_state_names(cls, state_names) -> tuple[str, ...]:
    names = tuple(state_names)
    if not names or not all(isinstance(s, str) and s.isidentifier() for s in names):
        raise ValueError(
            f"{cls.__name__}: state_names must be non-empty identifiers, got {state_names!r}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"{cls.__name__}: state_names must be distinct, got {names}")
    return names


def monomial_name(exponents: Sequence[int], state_names: Sequence[str]) -> str:
    """``(2, 1) , ("x", "y") -> "x^2*y"``; all zeros give ``"1"``."""
    parts = []
    for e, s in zip(exponents, state_names, strict=False):
        if e == 1:
            parts.append(s)
        elif e > 1:
            parts.append(f"{s}^{e}")
    return "*".join(parts) if parts else "1"


class PolynomialLibrary(AbstractLibrary):
    """All monomials of the states up to total degree ``degree``.

    Ordered by degree, then as ``itertools.combinations_with_replacement`` (pysindy's order):
    ``1, x, y, x^2, x*y, y^2, ...``. For s states there are C(s + degree, degree) terms
    (minus one without the bias).

    Args:
        state_names: names of the states, e.g. ``("x", "y")``.
        degree: highest total degree (>= 1).
        include_bias: include the constant term ``"1"``.
    """

    state_names: tuple[str, ...] = eqx.field(static=True)
    degree: int = eqx.field(static=True)
    include_bias: bool = eqx.field(static=True)
    exponents: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    def __init__(self, state_names: Sequence[str], degree: int = 2, include_bias: bool = True):
        self.state_names = _check_state_names(type(self), state_names)
        if not isinstance(degree, int) or degree < 1:
            raise ValueError(f"PolynomialLibrary: degree must be an integer >= 1, got {degree!r}")
        self.degree = degree
        self.include_bias = bool(include_bias)
        s = len(self.state_names)
        exps = []
        for d in range(0 if include_bias else 1, degree + 1):
            for combo in itertools.combinations_with_replacement(range(s), d):
                exps.append(tuple(combo.count(i) for i in range(s)))
        self.exponents = tuple(exps)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(monomial_name(e, self.state_names) for e in self.exponents)

    def _columns(self, Y):
        cols = []
        for e in self.exponents:
            c = jnp.ones(Y.shape[:1], Y.dtype)
            for i, k in enumerate(e):
                if k:
                    c = c * Y[:, i] ** k  # Python int power: exact repeated multiplication
            cols.append(c)
        return cols


class TrigLibrary(AbstractLibrary):
    """``f(k·s)`` for each function f in ``functions`` (``"sin"``, ``"cos"``), frequency k and
    state s.

    Named ``sin(x)`` (k = 1) or ``sin(2*x)``.
    """

    state_names: tuple[str, ...] = eqx.field(static=True)
    functions: tuple[str, ...] = eqx.field(static=True)
    frequencies: tuple[int | float, ...] = eqx.field(static=True)

    def __init__(
        self,
        state_names: Sequence[str],
        functions: Sequence[str] = ("sin", "cos"),
        frequencies: Sequence[int | float] = (1,),
    ):
        self.state_names = _check_state_names(type(self), state_names)
        functions = tuple(functions)
        bad = [f for f in functions if f not in TRIG]
        if bad or not functions:
            raise ValueError(
                f"TrigLibrary: functions must be some of {sorted(TRIG)}, got {functions!r}"
            )
        frequencies = tuple(frequencies)
        if not frequencies or any(not isinstance(k, (int, float)) or k == 0 for k in frequencies):
            raise ValueError(
                f"TrigLibrary: frequencies must be non-zero numbers, got {frequencies!r}"
            )
        self.functions = functions
        self.frequencies = frequencies

    def _terms(self):
        for k in self.frequencies:
            for f in self.functions:
                for i, s in enumerate(self.state_names):
                    yield f, k, i, (f"{f}({s})" if k == 1 else f"{f}({k}*{s})")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for *_, name in self._terms())

    def _columns(self, Y):
        return [TRIG[f](k * Y[:, i]) for f, k, i, _ in self._terms()]


class CustomLibrary(AbstractLibrary):
    """User-supplied named terms: ``{"exp(-x)": lambda y: jnp.exp(-y[0])}``.

    Each function maps one state vector ``(state,)`` to a scalar (it is vmapped over rows). Names
    should be SymPy-parseable in the state names if the result is to be printed and parsed.
    """

    state_names: tuple[str, ...] = eqx.field(static=True)
    functions: tuple[tuple[str, Callable], ...] = eqx.field(static=True)

    def __init__(self, state_names: Sequence[str], functions: Mapping[str, Callable]):
        self.state_names = _check_state_names(type(self), state_names)
        items = tuple(dict(functions).items())
        if not items:
            raise ValueError("CustomLibrary: functions must name at least one term")
        for name, fn in items:
            if not isinstance(name, str) or not callable(fn):
                raise ValueError(
                    f"CustomLibrary: functions must map names to callables, got {name!r}: {fn!r}"
                )
        self.functions = items

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.functions)

    def _columns(self, Y):
        import jax

        return [jax.vmap(fn)(Y) for _, fn in self.functions]


def expression_term(text, state_names: Sequence[str], *, path: str = "") -> tuple[str, sympy.Expr]:
    """One library term written as text (``"y/(1 + y)"``) → ``(name, expr)``: the rules of
    :func:`ude.equations.parse.library_term`, and a guard that
    :func:`~ude.discovery.symbolic.term_to_sympy` reads the name back as ``expr``."""
    states = tuple(state_names)
    name, expr = library_term(text, states, path=path)
    if term_to_sympy(name, states) != expr:  # pragma: no cover - a guard on the naming
        raise EquationError(path, f"library term {text!r}: its name {name!r} does not read back")
    return name, expr


@functools.lru_cache(maxsize=256)
def _term_exprs(names: tuple[str, ...], state_names: tuple[str, ...]) -> tuple[sympy.Expr, ...]:
    return tuple(term_to_sympy(n, state_names) for n in names)


class ExpressionLibrary(AbstractLibrary):
    """Terms written as text in the state names, e.g. ``("y/(1 + y)", "exp(-x)")``.

    Each term is parsed with :func:`ude.equations.parse.parse_expression` (the functions of
    :data:`~ude.equations.parse.FUNCTIONS`; no time ``t``) and checked by
    :func:`expression_term`; its name is the normalised text (``"y/(y + 1)"``), so printed
    equations and :func:`~ude.discovery.symbolic.to_sympy` read it back. Θ is evaluated with
    :func:`ude.equations.lower.lower` (SymPy's JAX lambdify). Terms equal as expressions
    (``"x*y"`` and ``"y*x"``) are rejected, here and when joined to another library.
    """

    state_names: tuple[str, ...] = eqx.field(static=True)
    terms: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, state_names: Sequence[str], terms: Sequence[str]):
        self.state_names = _check_state_names(type(self), state_names)
        if isinstance(terms, str) or not isinstance(terms, Sequence) or not terms:
            raise ValueError(
                f"ExpressionLibrary: terms must be a non-empty list of expressions, got {terms!r}"
            )
        names, seen = [], {}
        for i, text in enumerate(terms):
            try:
                name, expr = expression_term(text, self.state_names, path=f"terms[{i}]")
            except EquationError as e:
                raise EquationError(e.path, f"ExpressionLibrary: {e.problem}") from None
            key = sympy.expand(expr)
            if key in seen:
                raise EquationError(
                    f"terms[{i}]",
                    f"ExpressionLibrary: term {text!r} is the same as terms[{seen[key]}] "
                    f"{terms[seen[key]]!r} ({name})",
                )
            seen[key] = i
            names.append(name)
        self.terms = tuple(names)

    @property
    def names(self) -> tuple[str, ...]:
        return self.terms

    @property
    def exprs(self) -> tuple[sympy.Expr, ...]:
        """The terms as SymPy expressions in the state symbols."""
        return _term_exprs(self.terms, self.state_names)

    def _columns(self, Y):
        return list(lower(self.exprs, self.state_names)(*(Y[:, i] for i in range(Y.shape[1]))))


def _has_text_terms(lib: AbstractLibrary) -> bool:
    if isinstance(lib, InputLibrary):
        return _has_text_terms(lib.library)
    if isinstance(lib, CombinedLibrary):
        return any(_has_text_terms(p) for p in lib.parts)
    return isinstance(lib, ExpressionLibrary)


def _check_same_terms(parts: Sequence[AbstractLibrary], states: tuple[str, ...]) -> None:
    """Reject a text term equal (as an expression) to a term of another part."""
    if not any(_has_text_terms(p) for p in parts):
        return
    seen: dict = {}
    for p in parts:
        for n in p.names:
            try:
                key = sympy.expand(term_to_sympy(n, states))
            except ValueError:  # a CustomLibrary name need not parse
                continue
            if key in seen and seen[key][1] is not p:
                raise ValueError(
                    f"CombinedLibrary: term {n!r} of {type(p).__name__} is already in the library "
                    f"as {seen[key][0]!r} of {type(seen[key][1]).__name__}; remove one of them"
                )
            seen.setdefault(key, (n, p))


class CombinedLibrary(AbstractLibrary):
    """The columns of several libraries side by side (what ``lib_a + lib_b`` builds)."""

    parts: tuple[AbstractLibrary, ...]
    state_names: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, parts: Sequence[AbstractLibrary]):
        flat = []
        for p in parts:
            if not isinstance(p, AbstractLibrary):
                raise ValueError(
                    f"CombinedLibrary: parts must be libraries, got {type(p).__name__}"
                )
            flat.extend(p.parts if isinstance(p, CombinedLibrary) else [p])
        if not flat:
            raise ValueError("CombinedLibrary: parts must not be empty")
        states = flat[0].state_names
        for p in flat[1:]:
            if p.state_names != states:
                raise ValueError(
                    f"CombinedLibrary: parts disagree on state_names: {states} vs {p.state_names}"
                )
        _check_same_terms(flat, states)
        names = [n for p in flat for n in p.names]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"CombinedLibrary: duplicate term names {dup}")
        self.parts = tuple(flat)
        self.state_names = states

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for p in self.parts for n in p.names)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for p in self.parts for n in p.input_names))

    def _columns(self, Y):
        return [c for p in self.parts for c in p._columns(Y)]


KINDS = ("state", "input", "cross")
"""What a term reads: no input (``"state"``; the constant ``"1"`` too), only inputs
(``"input"``), or both (``"cross"``)."""


@functools.lru_cache(maxsize=256)
def _kinds(names: tuple[str, ...], variables: tuple[str, ...], inputs: frozenset) -> tuple:
    out = []
    for n in names:
        used = term_variables(n, variables)
        reads_input, reads_state = bool(used & inputs), bool(used - inputs)
        out.append(("cross" if reads_state else "input") if reads_input else "state")
    return tuple(out)


def term_kinds(library: AbstractLibrary, inputs: Sequence[str] | None = None) -> tuple[str, ...]:
    """The kind (:data:`KINDS`) of every term of ``library`` by the variables its name reads
    (``"u*x/(x + 1)"``: ``"cross"``); ``inputs`` defaults to the library's ``input_names``."""
    inputs = library.input_names if inputs is None else tuple(inputs)
    return _kinds(tuple(library.names), tuple(library.state_names), frozenset(inputs))


class InputLibrary(AbstractLibrary):
    """A library over states and inputs ``u(t)`` (SINDYc): ``library``'s variables
    (``state_names``) are the states and ``inputs``; only the terms whose kind (:func:`term_kinds`:
    ``"state"``, ``"input"``, ``"cross"``) is in ``kinds`` are kept, in their order.

    Θ is evaluated at the variables (``library.state_names`` order); a ``DiscoveredModel`` and
    ``discover`` read :attr:`input_names` to take the inputs from a solve's ``args`` or the data.
    Any library kind can be wrapped (text terms like ``"u*x/(1 + x)"`` too).

    >>> lib = PolynomialLibrary(("x", "u"), 2)
    >>> InputLibrary(lib, ("u",), kinds=("state", "cross")).names
    ('1', 'x', 'x^2', 'x*u')
    """

    library: AbstractLibrary
    inputs: tuple[str, ...] = eqx.field(static=True)
    kinds: tuple[str, ...] = eqx.field(static=True)
    keep: tuple[int, ...] = eqx.field(static=True)
    state_names: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self, library: AbstractLibrary, inputs: Sequence[str], kinds: Sequence[str] = KINDS
    ):
        if not isinstance(library, AbstractLibrary):
            raise ValueError(f"InputLibrary: library must be a library, got {type(library)}")
        variables = tuple(library.state_names)
        inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        unknown = [n for n in inputs if n not in variables]
        if unknown or len(set(inputs)) != len(inputs) or len(inputs) >= len(variables):
            raise ValueError(
                f"InputLibrary: inputs must be distinct variables of the library {list(variables)}"
                f" and leave at least one state; got {list(inputs)}"
            )
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        if not kinds or any(k not in KINDS for k in kinds) or len(set(kinds)) != len(kinds):
            raise ValueError(
                f"InputLibrary: kinds must be distinct of {list(KINDS)}, got {kinds!r}"
            )
        self.kinds = kinds
        self.keep = tuple(i for i, k in enumerate(term_kinds(library, inputs)) if k in kinds)
        if not self.keep:
            raise ValueError(
                f"InputLibrary: no term of {type(library).__name__} is of the kinds "
                f"{list(self.kinds)} (inputs {list(inputs)})"
            )
        self.library = library
        self.inputs = inputs
        self.state_names = variables

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.library.names[i] for i in self.keep)

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.inputs

    def _columns(self, Y):
        return [c for i, c in enumerate(self.library._columns(Y)) if i in self.keep]


def paper_library(state_names: Sequence[str] = ("x", "y"), degree: int = 5) -> CombinedLibrary:
    """The UDE paper's library: monomials up to ``degree`` (5) plus ``sin`` of each state
    (23 terms)."""
    return PolynomialLibrary(state_names, degree=degree) + TrigLibrary(
        state_names, functions=("sin",)
    )


def library_from_spec(
    state_names: Sequence[str],
    spec: Mapping | Sequence[Mapping],
    *,
    inputs: Sequence[str] = (),
    kinds: Sequence[str] | None = None,
) -> AbstractLibrary:
    """Build a library from plain data (for configs), e.g.
    ``[{"kind": "polynomial", "degree": 5}, {"kind": "trig", "functions": ["sin"]},
    {"kind": "expressions", "terms": ["y/(1 + y)"]}]``. A bad text term raises
    :class:`~ude.equations.parse.EquationError` at ``spec[i].terms[j]``.

    With ``inputs`` (names of inputs ``u(t)``) every item is built over the states and the inputs
    and wrapped in :class:`InputLibrary`; an item's ``"kinds"`` (``["state", "cross"]``, from
    :data:`KINDS`) keeps only its terms of those kinds, ``kinds`` here is the default for items
    that say none (all kinds)."""
    items = [spec] if isinstance(spec, Mapping) else list(spec)
    if not items:
        raise ValueError("library_from_spec: spec must name at least one library")
    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    variables = tuple(state_names) + inputs
    libs = []
    for i, item in enumerate(items):
        item = dict(item)
        kind = item.pop("kind", None)
        item_kinds = item.pop("kinds", kinds)
        if kind == "polynomial":
            lib = PolynomialLibrary(variables, **item)
        elif kind == "trig":
            lib = TrigLibrary(variables, **item)
        elif kind == "expressions":
            try:
                lib = ExpressionLibrary(variables, **item)
            except EquationError as e:
                raise EquationError(f"spec[{i}].{e.path}", e.problem) from None
        else:
            raise ValueError(
                f"library_from_spec: spec[{i}].kind must be 'polynomial', 'trig' or "
                f"'expressions', got {kind!r}"
            )
        if inputs or item_kinds is not None:
            try:
                lib = InputLibrary(lib, inputs, KINDS if item_kinds is None else item_kinds)
            except ValueError as e:
                raise ValueError(f"library_from_spec: spec[{i}]: {e}") from None
        libs.append(lib)
    return libs[0] if len(libs) == 1 else CombinedLibrary(libs)
