"""Hugging Face interop: ``from_hf`` imports GPT-2, Llama-family and BERT models exactly; ``to_hf_gpt2``
exports a GPT-2-shaped glassformer model back to ``transformers``. See docs/interop.md."""

from glassformer.interop.gpt2 import to_hf_gpt2
from glassformer.interop.hf import CONVERTERS, from_hf
from glassformer.interop.llama_export import to_hf_llama

__all__ = ["CONVERTERS", "from_hf", "to_hf_gpt2", "to_hf_llama"]
