"""The error the circuits package raises on bad input (a model it cannot decompose, a missing or corrupt
suite folder, an unknown method)."""

from glassformer.errors import GlassformerError


class CircuitsError(GlassformerError):
    """Bad input to the circuits benchmark; the message names the problem."""
