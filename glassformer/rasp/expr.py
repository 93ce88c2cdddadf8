"""The base of every RASP expression: a name, an id, and the children it reads (see ``language.py``)."""

from __future__ import annotations

import copy
import itertools
import keyword
import re
from typing import Any

from glassformer.rasp.errors import RaspProgramError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RASPExpr:
    """A node of a RASP program.  ``name`` is its label (unique in a program once compiled);
    ``children`` are the expressions it reads (the attributes named in ``_child_attrs``); ``id`` is
    unique per Python object."""

    _ids = itertools.count()
    kind = "expr"  # the prefix of default names
    _child_attrs: tuple[str, ...] = ()

    def __init__(self, name: str | None = None):
        self.id = next(RASPExpr._ids)
        self._name = _check_name(name, self) if name is not None else None

    @property
    def name(self) -> str:
        return self._name if self._name is not None else f"{self.kind}_{self.id}"

    @property
    def children(self) -> tuple[RASPExpr, ...]:
        return tuple(getattr(self, attr) for attr in self._child_attrs)

    def named(self, name: str) -> RASPExpr:
        """A copy of this expression with the label ``name`` (a Python identifier)."""
        new = copy.copy(self)
        new.id = next(RASPExpr._ids)
        new._name = _check_name(name, self)
        return new

    def __repr__(self) -> str:
        from glassformer.rasp.printing import expr_to_string

        return expr_to_string(self)


def _check_name(name: Any, expr: RASPExpr) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name):
        raise RaspProgramError(f"{type(expr).__name__}: name {name!r} must be a Python identifier such as 'reverse'")
    return name
