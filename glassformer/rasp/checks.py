"""Argument checks shared by the RASP language's constructors: each raises :class:`RaspProgramError`
naming the operation and what it needed, so an ill-formed program fails where it is built."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable

from glassformer.rasp.errors import RaspProgramError


def _check_sop(x: Any, op, role: str, name: str | None = None):
    from glassformer.rasp.language import RASPExpr, SOp

    if not isinstance(x, SOp):
        owner = f"{type(op).__name__} {name or (op.name if op is not None and hasattr(op, 'id') else '')}".strip() if op is not None else "argument"
        got = f"{type(x).__name__} {x.name}" if isinstance(x, RASPExpr) else type(x).__name__
        raise RaspProgramError(f"{owner}: {role} must be a SOp (tokens, indices, a Map, ...), got {got}")
    return x


def _check_selector(x: Any, op, role: str):
    from glassformer.rasp.language import RASPExpr, Selector

    if not isinstance(x, Selector):
        got = f"{type(x).__name__} {x.name}" if isinstance(x, RASPExpr) else type(x).__name__
        raise RaspProgramError(f"{type(op).__name__} {op.name}: {role} argument must be a Selector (Select(...)), got {got}")
    return x


def _check_callable(f: Any, op, n_args: int, what: str = "function") -> Callable:
    from glassformer.rasp.language import RASPExpr

    if not callable(f) or isinstance(f, RASPExpr):
        raise RaspProgramError(f"{type(op).__name__} {op.name}: {what} must be a callable of {n_args} argument(s), got {type(f).__name__}")
    return f


def _check_number(value: Any, where: str) -> int | float:
    if isinstance(value, bool):
        return int(value)
    if not is_number(value):
        raise RaspProgramError(f"{where}: a numerical value must be a finite number, got {value!r}")
    return value


def _numerical_default(expr, value: Any, attr: str = "default") -> int | float:
    """``value`` as a numerical SOp's default (or Full value): None reads as 0, "no value"."""
    return _check_number(0 if value is None else value, f"{type(expr).__name__} {expr.name} {attr}")


def is_number(value: Any) -> bool:
    """A finite real number that fits a float (an int of 400 digits does not)."""
    try:
        return isinstance(value, Real) and math.isfinite(float(value))
    except OverflowError:
        return False
