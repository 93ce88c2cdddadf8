"""Sparse checkpoints for compiled models: only the non-zero weights are stored.

A compiled model is mostly zeros (one-hot residual dimensions, heads and MLP units that read a few of
them, layers sized to the widest): dyck2 at N = 64 is about 50 M dense parameters but 33 k non-zero
ones.  ``compiled.save(DIR, sparse=True)`` writes

    config.json                the ModelConfig, as in every checkpoint
    rasp_sparse.safetensors    per parameter NAME: NAME.index (flat indices, int64 [nnz]) and
                               NAME.value ([nnz], the model's dtype)
    extra.json                 the encoders (``"rasp"``), with ``"sparse": {NAME: shape}``
    tokenizer files, checkpoint.json (the manifest: every file's size and SHA-256)

``CompiledModel.load(DIR)`` reads both kinds.  The dense format (``model.safetensors``) stays the
default, because ``glassformer.load`` and the CLI's ``sample`` read only that one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from glassformer.errors import CheckpointError

SPARSE_WEIGHTS = "rasp_sparse.safetensors"


def sparse_tensors(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:
    """The non-zero entries of every parameter: ``{NAME.index, NAME.value}`` and ``{NAME: shape}``."""
    tensors, shapes = {}, {}
    for name, p in model.named_parameters():
        flat = p.detach().cpu().reshape(-1)
        index = torch.nonzero(flat, as_tuple=True)[0]  # [nnz]
        tensors[f"{name}.index"] = index.to(torch.int64).contiguous()
        tensors[f"{name}.value"] = flat[index].contiguous()
        shapes[name] = list(p.shape)
    return tensors, shapes


def save_sparse(dir: str | Path, model: torch.nn.Module, tokenizer, extra: dict) -> Path:
    """Write a sparse checkpoint folder atomically (see the module docstring)."""
    from glassformer.train import checkpoint as ckpt

    tensors, shapes = sparse_tensors(model)
    extra = {**extra, "rasp": {**extra["rasp"], "sparse": shapes}}
    final = Path(dir)
    with ckpt._atomic_folder(final) as tmp:
        ckpt._write_json(tmp / ckpt.CONFIG, ckpt.model_config(model).to_dict())
        save_file(tensors, str(tmp / SPARSE_WEIGHTS), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp)
        ckpt._write_json(tmp / ckpt.EXTRA, extra)
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        ckpt._write_json(tmp / ckpt.MANIFEST, {
            "format": ckpt.FORMAT, "version": ckpt.VERSION, "has_tokenizer": tokenizer is not None,
            "files": {name: {"bytes": (tmp / name).stat().st_size, "sha256": ckpt._sha256(tmp / name)}
                      for name in files},
        })
    return final


def is_sparse(dir: str | Path) -> bool:
    from glassformer.train import checkpoint as ckpt

    return (ckpt.resolve(dir) / SPARSE_WEIGHTS).is_file()


def load_sparse(dir: str | Path, device: str | None = None):
    """``(model, extra)`` from a sparse checkpoint folder, every file verified against the manifest."""
    from glassformer.model import ModelConfig, Transformer
    from glassformer.train import checkpoint as ckpt

    path = ckpt.resolve(dir)
    manifest = ckpt._read_json(path / ckpt.MANIFEST)
    files = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    for name, expected in files.items():
        ckpt._verify(path / name, expected)
    for required in (ckpt.CONFIG, SPARSE_WEIGHTS, ckpt.EXTRA):
        if required not in files:
            raise CheckpointError(f"{path / required} is missing from the sparse checkpoint")
    config = ModelConfig.from_dict(ckpt._read_json(path / ckpt.CONFIG))
    extra = ckpt._read_json(path / ckpt.EXTRA)
    shapes = extra.get("rasp", {}).get("sparse")
    tensors = ckpt._read_tensors(path / SPARSE_WEIGHTS)
    with torch.random.fork_rng(devices=[]):  # every parameter is overwritten below
        model = Transformer(config)
    for name, p in model.named_parameters():
        if not isinstance(shapes, dict) or shapes.get(name) != list(p.shape) or f"{name}.index" not in tensors:
            raise CheckpointError(f"{path / SPARSE_WEIGHTS} does not match {ckpt.CONFIG} at parameter {name}")
        values = tensors[f"{name}.value"]
        flat = torch.zeros(p.numel(), dtype=values.dtype)
        flat[tensors[f"{name}.index"]] = values
        p.data = flat.reshape(p.shape)
    model.to(ckpt._pick_device(device))
    model.eval()
    tokenizer = ckpt._load_tokenizer(path) if manifest.get("has_tokenizer") else None
    return model, tokenizer, extra
