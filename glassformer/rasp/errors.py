"""The errors a RASP program can raise, each naming the operation at fault.

* :class:`RaspProgramError`     the program is ill-formed (a categorical mean, a Map over a selector,
                                a predicate that is not one) -- raised when it is built or evaluated.
* :class:`RaspEvaluationError`  the program is well-formed but fails on this input (an ambiguous
                                categorical aggregate, a numerical Map that returned a string).
* :class:`RaspCompileError`     the program cannot be compiled *exactly*; the compiler refuses rather
                                than build a model that is silently wrong.
"""

from __future__ import annotations

from glassformer.errors import GlassformerError


class RaspError(GlassformerError):
    """Base class of the RASP errors."""


class RaspProgramError(RaspError):
    """An ill-formed RASP program; the message names the operation."""


class RaspEvaluationError(RaspError):
    """Evaluating a RASP program on a given input failed; the message names the operation and position."""


class RaspCompileError(RaspError):
    """A RASP operation cannot be compiled exactly.

    ``op`` is the operation's name (its label in the program), ``reason`` says why.  ``float_limited``
    marks a failure that only the floating-point precision causes (a wider dtype would compile).
    """

    def __init__(self, op: str, reason: str, float_limited: bool = False):
        self.op, self.reason, self.float_limited = op, reason, float_limited
        super().__init__(f"cannot compile {op!r}: {reason}")
