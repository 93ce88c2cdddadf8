"""The errors glassformer raises on bad input.

Every error a user can cause (a bad config value, a token out of vocabulary, a sequence longer than the
model's context, a corrupt checkpoint, an ill-typed RASP program) is one of these, with a message that
names the problem. They subclass ``ValueError`` so callers that already catch that keep working.
"""


class GlassformerError(ValueError):
    """Base class of every error glassformer raises on bad input."""


class ConfigError(GlassformerError):
    """A configuration field has a bad value. The message names the field and the allowed values."""


class InputError(GlassformerError):
    """A model or tokenizer input is invalid (token id out of vocabulary, sequence too long, bad shape)."""


class CheckpointError(GlassformerError):
    """A checkpoint folder or file is missing, truncated, or not a glassformer checkpoint."""


class OutputError(GlassformerError):
    """An output folder cannot be written (permissions, a full disk) or is in use by another run."""
