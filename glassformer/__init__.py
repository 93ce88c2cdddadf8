"""glassformer: a transformer you can read, train, compile programs into, and look inside."""

from glassformer.errors import CheckpointError, ConfigError, GlassformerError, InputError
from glassformer.model import ModelConfig, Transformer

__version__ = "0.1.0"


def load(path, device=None):
    """Load ``(model, tokenizer)`` from a checkpoint folder (see :mod:`glassformer.train.checkpoint`)."""
    from glassformer.train.checkpoint import load as _load

    return _load(path, device=device)


def from_hf(model_or_path, **kwargs):
    """Import a Hugging Face GPT-2, Llama-family or BERT model (in memory, or a local folder of
    ``config.json`` + ``*.safetensors``) into a glassformer :class:`Transformer` with identical logits."""
    from glassformer.interop import from_hf as _from_hf

    return _from_hf(model_or_path, **kwargs)


def __getattr__(name):  # `from glassformer import rasp` etc. without importing every subsystem up front
    import importlib

    if name in ("rasp", "lens", "explain", "train", "viz", "interop"):
        return importlib.import_module(f"glassformer.{name}")
    raise AttributeError(f"module 'glassformer' has no attribute {name!r}")


__all__ = ["CheckpointError", "ConfigError", "GlassformerError", "InputError", "ModelConfig", "Transformer", "from_hf", "load"]
