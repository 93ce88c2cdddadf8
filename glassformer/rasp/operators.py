"""The functions behind SOp arithmetic (``x + 1``, ``x - y``, ``x & y``, ``~x``): named callables, so
that programs print as readable code and the compiler can see which maps are affine."""

from __future__ import annotations


def logical_and(x, y):
    return bool(x) and bool(y)


def logical_or(x, y):
    return bool(x) or bool(y)


def logical_not(x):
    return not x


class Op1:
    """``x <op> c`` (or ``c <op> x``, or ``<op> x``) as a named callable, so programs print readably."""

    def __init__(self, fn, symbol, constant, reflected=False, unary=False):
        self.fn, self.symbol, self.constant, self.reflected, self.unary = fn, symbol, constant, reflected, unary

    def __call__(self, x):
        if self.unary:
            return self.fn(x)
        return self.fn(self.constant, x) if self.reflected else self.fn(x, self.constant)

    @property
    def source(self) -> str:
        if self.unary:
            return f"lambda x: {self.symbol} x" if self.symbol == "not" else f"lambda x: {self.symbol}x"
        return f"lambda x: {self.constant!r} {self.symbol} x" if self.reflected else f"lambda x: x {self.symbol} {self.constant!r}"


class Op2:
    def __init__(self, fn, symbol):
        self.fn, self.symbol = fn, symbol

    def __call__(self, x, y):
        return self.fn(x, y)

    @property
    def source(self) -> str:
        return f"lambda x, y: x {self.symbol} y"
