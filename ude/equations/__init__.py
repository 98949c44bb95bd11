"""Equations as text: parsed with SymPy (:mod:`.parse`, no JAX, what configs check) and lowered to
JAX (:mod:`.lower`, imported by :class:`ude.physics.Equations` and the text library terms).

This package's ``__init__`` imports only the parser, so validating a config stays JAX-free.
"""

from .parse import (
    FUNCTIONS as FUNCTIONS,
    TIME as TIME,
    EquationError as EquationError,
    ParsedEquations as ParsedEquations,
    Term as Term,
    parse_equations as parse_equations,
    parse_expression as parse_expression,
    parse_terms as parse_terms,
    text_of as text_of,
)
