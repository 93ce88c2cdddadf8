"""`from_hf`: load a Hugging Face model into glassformer's own :class:`~glassformer.Transformer`, exactly.

    model = from_hf(hf_model)            # an in-memory transformers model (GPT2LMHeadModel, LlamaForCausalLM, ...)
    model = from_hf("path/to/folder")    # config.json + *.safetensors, as save_pretrained writes them
    model = from_hf("gpt2")              # a Hub name: downloaded only if it is not a local folder (needs network)

The HF config's ``model_type`` picks the converter (``CONVERTERS``); each one maps the HF config to a
:class:`~glassformer.ModelConfig` and the HF tensors to glassformer's parameter names, and this module builds
the model and loads them, checking that every parameter is filled with a tensor of the right shape.
The result computes the same logits as the HF model (tests hold them to 1e-4 in float32).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from glassformer.errors import CheckpointError, ConfigError
from glassformer.interop import bert, gemma, gpt2, llama, neox, opt, t5
from glassformer.interop.source import HFSource, read_source
from glassformer.model import ModelConfig, Transformer

# model_type -> fn(source) -> (glassformer config, {glassformer parameter name: tensor})
Converter = Callable[[HFSource], "tuple[ModelConfig, dict[str, torch.Tensor]]"]
CONVERTERS: dict[str, Converter] = {
    "gpt2": gpt2.convert,
    "llama": llama.convert,
    "mistral": llama.convert,
    "qwen2": llama.convert,
    "bert": bert.convert,
    "gpt_neox": neox.convert,
    "opt": opt.convert,
    "gemma": gemma.convert,
    "gemma2": gemma.convert_gemma2,
    "gemma3_text": gemma.convert_gemma2,
    "t5": t5.convert,
}


def from_hf(model_or_path: Any, *, dtype: torch.dtype = torch.float32) -> Transformer:
    """A glassformer Transformer with the weights of a Hugging Face GPT-2, Llama-family or BERT model.

    ``model_or_path``: a ``transformers`` model object, a folder holding ``config.json`` + ``*.safetensors``,
    or a Hub repo id (only fetched when no such local folder exists). Returns the model in eval mode,
    its parameters in ``dtype``. Raises :class:`~glassformer.errors.CheckpointError` for an unsupported
    model type, a missing or corrupt file, or tensors that do not fit the config.
    """
    source = read_source(model_or_path)
    convert = CONVERTERS.get(source.model_type)
    if convert is None:
        raise CheckpointError(
            f"{source.name}: model_type {source.model_type!r} is not supported; "
            f"from_hf reads {', '.join(map(repr, CONVERTERS))}"
        )
    try:
        config, params = convert(source)
    except ConfigError as e:  # config.json holds values glassformer's config refuses
        raise CheckpointError(f"{source.name}: config.json does not give a valid glassformer model: {e}") from None
    model = build(config, params, source.name).to(dtype)
    tokenizer = folder_tokenizer(model_or_path)  # a folder's tokenizer.json: model.to_tokens("...") works
    model.tokenizer = None if tokenizer is None else tokenizer.padded_to(config.d_vocab)
    return model


def folder_tokenizer(model_or_path: Any):
    """The tokenizer saved beside a local model folder's weights (tokenizer.json, or GPT-2's vocab.json +
    merges.txt), or None (an in-memory model, or a folder without one)."""
    from pathlib import Path

    if not isinstance(model_or_path, (str, Path)):
        return None
    path = Path(model_or_path).expanduser()
    if not ((path / "tokenizer.json").is_file() or (path / "vocab.json").is_file() and (path / "merges.txt").is_file()):
        return None
    from glassformer.train.tokenizers import BPETokenizer

    return BPETokenizer.from_hf_folder(path)


def build(config: ModelConfig, params: dict[str, torch.Tensor], source_name: str) -> Transformer:
    """Transformer(config) with exactly ``params`` loaded: every parameter given, each the right shape."""
    model = Transformer(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    if missing or extra:  # a converter bug, or a config field the converter did not account for
        raise CheckpointError(
            f"{source_name}: converted weights do not fit the glassformer model "
            f"(missing: {', '.join(missing) or '-'}; unexpected: {', '.join(extra) or '-'})"
        )
    for name, tensor in params.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{source_name}: {name} has shape {tuple(tensor.shape)} but the config needs "
                f"{tuple(expected[name].shape)} (does config.json match the weights?)"
            )
    model.load_state_dict(params, strict=True)
    return model.eval()
