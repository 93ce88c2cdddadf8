"""``glassformer import MODEL_DIR --out RUN``: a local Hugging Face model folder -> a glassformer checkpoint.

The checkpoint holds the converted weights (logits equal to the source's within 1e-4 in float32), the
model's tokenizer (the folder's ``tokenizer.json``, or GPT-2's ``vocab.json`` + ``merges.txt``) and where it
came from, so every checkpoint command works on it with string prompts:

    glassformer import ./my-gpt2 --out runs/gpt2
    glassformer sample runs/gpt2 --prompt "Hello" --greedy
    glassformer inspect runs/gpt2 --input "Hello world" --html report.html
    glassformer explain runs/gpt2 --input "Hello" --out forward.html
    glassformer diagram runs/gpt2 --out model.svg
    glassformer train --text corpus.txt --init runs/gpt2 --out runs/gpt2-tuned      # fine-tune it

``glassformer export RUN --out HF_DIR`` writes a checkpoint back as a Hugging Face folder (GPT-2- or
Llama-shaped models), tokenizer included.
"""

from __future__ import annotations

import json
from pathlib import Path

from glassformer.errors import CheckpointError, ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import", help="turn a local Hugging Face model folder into a glassformer checkpoint",
        description="Convert a Hugging Face model folder (config.json + *.safetensors; GPT-2, Llama, Mistral, Qwen2, BERT, "
        "GPT-NeoX/Pythia, OPT, Gemma, T5) and its tokenizer into a glassformer checkpoint that sample, inspect, explain and diagram read.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a folder written by save_pretrained (config.json, *.safetensors, tokenizer.json)")
    p.add_argument("--out", required=True, help="the checkpoint folder to write")
    p.add_argument("--no-tokenizer", action="store_true", help="import the weights only (prompts must then be token ids)")
    p.set_defaults(func=cmd_import)

    p = subparsers.add_parser(
        "export", help="write a checkpoint as a Hugging Face model folder (GPT-2 or Llama shaped)",
        description="Save a glassformer checkpoint as a transformers model folder (save_pretrained) with its tokenizer, "
        "so it opens with AutoModelForCausalLM.from_pretrained and computes the same logits.",
    )
    p.add_argument("dir", metavar="RUN", help="checkpoint folder or training run folder")
    p.add_argument("--out", required=True, help="the Hugging Face folder to write")
    p.add_argument("--to", choices=("auto", "gpt2", "llama"), default="auto", help="target family (default: auto = whichever fits)")
    p.set_defaults(func=cmd_export)


def import_folder(model_dir: str | Path, out: str | Path, tokenizer: bool = True) -> Path:
    """Convert the HF folder ``model_dir`` and save it as the checkpoint ``out``, with the folder's tokenizer
    when it has one (and ``tokenizer`` is true)."""
    from glassformer.interop.hf import from_hf
    from glassformer.train.checkpoint import save_checkpoint

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: no such folder (glassformer import reads a local Hugging Face model folder)")
    model = from_hf(model_dir)  # with model.tokenizer from the folder, padded to the model's vocabulary, or None
    tok = model.tokenizer if tokenizer else None
    if tok is not None and tok.vocab_size > model.config.d_vocab:
        raise CheckpointError(f"{model_dir}: the tokenizer has {tok.vocab_size} tokens but the model only {model.config.d_vocab}")
    source = json.loads((model_dir / "config.json").read_text())
    extra = {"imported_from": str(model_dir.resolve()), "model_type": source.get("model_type")}
    if model.config.arch == "encoder-decoder":  # where decoding starts and ends (sample, inspect, explain read it)
        from glassformer.interop.t5 import special_tokens

        extra["seq2seq"] = special_tokens(source)
    return save_checkpoint(out, model, tokenizer=tok, extra=extra)


def cmd_import(args) -> int:
    out = import_folder(args.model_dir, args.out, tokenizer=not args.no_tokenizer)
    from glassformer.train.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(out)
    c = checkpoint.config
    print(f"imported {checkpoint.extra.get('model_type')} from {args.model_dir}: {c.n_layers}-layer {c.arch}, d_model {c.d_model}, "
          f"{c.n_heads} heads, vocabulary {c.d_vocab}, {checkpoint.model.num_params():,} parameters")
    print(f"checkpoint: {out}" + ("" if checkpoint.tokenizer is None else f"   (try: glassformer sample {out} --prompt 'Hello' --greedy)"))
    if checkpoint.tokenizer is None and not args.no_tokenizer:
        print(f"note: {args.model_dir} has no tokenizer.json (nor vocab.json + merges.txt): prompts must be token ids")
    return 0


def cmd_export(args) -> int:
    from glassformer.interop.gpt2 import to_hf_gpt2
    from glassformer.interop.llama_export import to_hf_llama
    from glassformer.train.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(args.dir)
    model = checkpoint.model
    target = args.to
    if target == "auto":
        target = "llama" if model.config.norm == "rmsnorm" else "gpt2"
    if target not in ("gpt2", "llama"):
        raise ConfigError(f"--to must be gpt2 or llama, got {target!r}")
    hf = to_hf_gpt2(model) if target == "gpt2" else to_hf_llama(model)
    out = Path(args.out)
    hf.save_pretrained(out)
    if checkpoint.tokenizer is not None and hasattr(checkpoint.tokenizer, "hf"):
        checkpoint.tokenizer.hf.save(str(out / "tokenizer.json"))  # a Hugging Face tokenizer.json
    print(f"exported {checkpoint.path} as a Hugging Face {target} model: {out}")
    return 0


__all__ = ["import_folder", "register"]
