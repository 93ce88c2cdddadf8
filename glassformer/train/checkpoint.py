"""Checkpoints: one folder per checkpoint, written atomically, read without unpickling.

A checkpoint folder holds

    checkpoint.json          format marker, version, and the size and SHA-256 of every other file
    config.json              the ModelConfig
    model.safetensors        the model's weights
    tokenizer files          whatever ``tokenizer.save(dir)`` writes (if there is a tokenizer)
    task.json                the task spec {"name", "options", "format"} that eval/sample rebuild
    optimizer.safetensors    optimizer tensors (AdamW moments, step counts)     } training
    optimizer.json           optimizer hyper-parameters and the tensor layout  } checkpoints
    trainer_state.json       step, TrainConfig, counters                       } only
    trainer_state.safetensors  RNG states (torch, CUDA, the task's generator)  }
    extra.json               free-form JSON metadata (``save_model(..., extra=...)``)

Only JSON and safetensors are read back, so loading a checkpoint never runs code from it.

Atomic writes: everything is written into a temporary folder beside the target, each file and the
folder are fsync'ed, then the folder is renamed into place. An existing checkpoint is first renamed
aside to ``.NAME.old`` and deleted only after the new one is in place; if a crash falls between
the two renames, the next save or load puts ``.NAME.old`` back. So at every instant either the old
or the new checkpoint is complete on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model as _save_weights

from glassformer.errors import CheckpointError, ConfigError
from glassformer.model.config import ModelConfig

FORMAT = "glassformer-checkpoint"
VERSION = 1
MANIFEST = "checkpoint.json"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TASK = "task.json"
EXTRA = "extra.json"
OPTIMIZER_TENSORS, OPTIMIZER_META = "optimizer.safetensors", "optimizer.json"
STATE_TENSORS, STATE_META = "trainer_state.safetensors", "trainer_state.json"
RUN_SUBFOLDER = "checkpoint"  # a training run keeps its checkpoint in OUT_DIR/checkpoint


@dataclass
class Checkpoint:
    """Everything read back from a checkpoint folder."""

    path: Path
    config: ModelConfig
    model: torch.nn.Module
    tokenizer: Any = None
    task: dict | None = None  # {"name": ..., "options": {...}, "format": N}
    extra: dict = field(default_factory=dict)
    optimizer_state: dict | None = None  # ready for optimizer.load_state_dict
    trainer_state: dict | None = None  # JSON part of the training state
    trainer_tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # RNG states

    @property
    def resumable(self) -> bool:
        return self.optimizer_state is not None and self.trainer_state is not None


# -- saving ---------------------------------------------------------------------------------------


def save_model(dir: str | Path, model: torch.nn.Module, tokenizer: Any = None, extra: dict | None = None) -> Path:
    """Save a model (and optionally its tokenizer and JSON metadata) as a checkpoint folder ``dir``.

    ``glassformer.load(dir)`` reads it back as ``(model, tokenizer)``.
    """
    return save_checkpoint(dir, model, tokenizer=tokenizer, extra=extra)


def save_checkpoint(
    dir: str | Path,
    model: torch.nn.Module,
    *,
    tokenizer: Any = None,
    task: dict | None = None,
    extra: dict | None = None,
    optimizer: torch.optim.Optimizer | dict | None = None,
    trainer_state: dict | None = None,
    trainer_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint folder atomically and return its path.

    ``optimizer`` may be an optimizer or its ``state_dict()``. ``trainer_state`` must be
    JSON-serialisable; ``trainer_tensors`` (e.g. RNG states) go to a safetensors file.
    """
    config = model_config(model)
    final = Path(dir)
    with _atomic_folder(final) as tmp:
        _write_json(tmp / CONFIG, config.to_dict())
        _save_weights(_unwrap(model), str(tmp / WEIGHTS), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp)
        if task is not None:
            _write_json(tmp / TASK, task)
        if extra is not None:
            _write_json(tmp / EXTRA, extra)
        if optimizer is not None:
            state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
            tensors, meta = _flatten_optimizer_state(state)
            save_file(tensors, str(tmp / OPTIMIZER_TENSORS), metadata={"format": "pt"})
            _write_json(tmp / OPTIMIZER_META, meta)
        if trainer_state is not None:
            _write_json(tmp / STATE_META, trainer_state)
            tensors = {k: v.detach().cpu().contiguous() for k, v in (trainer_tensors or {}).items()}
            save_file(tensors, str(tmp / STATE_TENSORS), metadata={"format": "pt"})
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "has_tokenizer": tokenizer is not None,
            "files": {name: {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)} for name in files},
        }
        _write_json(tmp / MANIFEST, manifest)
    return final


def model_config(model: torch.nn.Module) -> ModelConfig:
    """The ModelConfig of a glassformer model (also through DDP / torch.compile wrappers)."""
    model = _unwrap(model)
    config = getattr(model, "config", None) or getattr(model, "cfg", None)
    if not isinstance(config, ModelConfig):
        raise CheckpointError(f"cannot save {type(model).__name__}: it has no ModelConfig in .config")
    return config


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """Strip DistributedDataParallel (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


@contextmanager
def _atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final``; on success, fsync it and swap it into place."""
    final = final.absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    _recover(final)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):  # left by a crash during an earlier save
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        for path in tmp.iterdir():
            _fsync(path)
        _fsync(tmp)
        old = _backup_path(final)
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            if not final.is_dir():
                raise CheckpointError(f"cannot write checkpoint: {final} exists and is not a folder")
            os.rename(final, old)
        os.rename(tmp, final)
        _fsync(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _backup_path(final: Path) -> Path:
    return final.parent / f".{final.name}.old"


def _recover(final: Path) -> None:
    """If a crash fell between renaming the old checkpoint aside and the new one in, restore the old."""
    old = _backup_path(final.absolute())
    if old.is_dir() and not final.exists():
        os.rename(old, final)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _flatten_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer ``state_dict`` into tensors (for safetensors) and the JSON rest."""
    tensors: dict[str, torch.Tensor] = {}
    per_param: dict[str, dict] = {}
    for index, param_state in state["state"].items():
        entry: dict[str, Any] = {"tensors": [], "values": {}}
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
                entry["tensors"].append(key)
            else:
                entry["values"][key] = value
        per_param[str(index)] = entry
    return tensors, {"param_groups": state["param_groups"], "state": per_param}


def _unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {}
    for index, entry in meta["state"].items():
        param_state = dict(entry["values"])
        for key in entry["tensors"]:
            param_state[key] = tensors[f"state.{index}.{key}"]
        state[int(index)] = param_state
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


# -- random number generators -------------------------------------------------------------------


def capture_rng(generator: torch.Generator, device: torch.device | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Every RNG a training step may draw from, as (JSON, tensors): Python's ``random``, NumPy's
    global generator, torch's CPU (and this CUDA device's) generator, and the task's ``generator``."""
    np_state = np.random.get_state()  # ("MT19937", keys [624] uint32, pos, has_gauss, cached_gaussian)
    as_json = {
        "python": _lists(random.getstate()),
        "numpy": {"pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
    }
    tensors = {
        "rng.torch": torch.get_rng_state(),
        "rng.task": generator.get_state(),
        "rng.numpy": torch.from_numpy(np_state[1].astype(np.int64)),
    }
    if device is not None and device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    return as_json, tensors


def restore_rng(as_json: dict, tensors: dict[str, torch.Tensor], generator: torch.Generator, device: torch.device | None = None) -> None:
    """Put back the RNG states :func:`capture_rng` returned."""
    random.setstate(_tuples(as_json["python"]))
    numpy = as_json["numpy"]
    keys = tensors["rng.numpy"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.task"])
    if "rng.cuda" in tensors and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


def _lists(value):
    return [_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


# -- loading --------------------------------------------------------------------------------------


def resolve(dir: str | Path) -> Path:
    """The checkpoint folder for ``dir``: ``dir`` itself, or ``dir/checkpoint`` for a training run's folder."""
    path = Path(dir)
    _recover(path)
    if not (path / MANIFEST).exists() and (path / RUN_SUBFOLDER / MANIFEST).exists():
        path = path / RUN_SUBFOLDER
        _recover(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {path}")
    if not (path / MANIFEST).is_file():
        raise CheckpointError(
            f"{path / MANIFEST} is missing: {path} is not a glassformer checkpoint folder"
        )
    return path


def load_checkpoint(dir: str | Path, device: str | torch.device | None = None) -> Checkpoint:
    """Read and verify a checkpoint folder (or a run folder containing ``checkpoint/``).

    Every file listed in ``checkpoint.json`` is checked for size and SHA-256 first, so a truncated
    or altered file raises :class:`CheckpointError` naming it. The model is built on ``device``
    (default CPU; ``"auto"`` picks cuda, mps or cpu).
    """
    from glassformer.model import Transformer  # the model package imports train-free modules only

    path = resolve(dir)
    manifest = _read_json(path / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path / MANIFEST} is not a glassformer checkpoint manifest (format != {FORMAT!r})")
    files = _check_manifest(manifest, path / MANIFEST)
    if manifest.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path / MANIFEST} has format version {manifest.get('version')}; this glassformer reads up to {VERSION}"
        )
    for name, expected in files.items():
        _verify(path / name, expected)
    for required in (CONFIG, WEIGHTS):
        if required not in files:
            raise CheckpointError(f"{path / required} is missing from the checkpoint")

    try:
        config = ModelConfig.from_dict(_read_json(path / CONFIG))
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{path / CONFIG} is not a valid model config: {e}") from None
    device = _pick_device(device)
    model = Transformer(config)
    try:
        missing, unexpected = load_model(model, str(path / WEIGHTS), strict=False)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise CheckpointError(f"{path / WEIGHTS} could not be read as safetensors weights: {e}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path / WEIGHTS} does not match {CONFIG}: missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]}"
        )
    model.to(device)
    model.eval()

    checkpoint = Checkpoint(path=path, config=config, model=model)
    if manifest.get("has_tokenizer"):
        checkpoint.tokenizer = _load_tokenizer(path)
    if TASK in files:
        checkpoint.task = _read_json(path / TASK)
    if EXTRA in files:
        checkpoint.extra = _read_json(path / EXTRA)
    if OPTIMIZER_META in files and OPTIMIZER_TENSORS in files:
        tensors = _read_tensors(path / OPTIMIZER_TENSORS)
        try:
            checkpoint.optimizer_state = _unflatten_optimizer_state(tensors, _read_json(path / OPTIMIZER_META))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{path / OPTIMIZER_META} does not describe {OPTIMIZER_TENSORS}: {e!r}") from None
    if STATE_META in files:
        checkpoint.trainer_state = _read_json(path / STATE_META)
        if STATE_TENSORS in files:
            checkpoint.trainer_tensors = _read_tensors(path / STATE_TENSORS)
    return checkpoint


def load(dir: str | Path, device: str | torch.device | None = None) -> tuple[torch.nn.Module, Any]:
    """``glassformer.load(DIR) -> (model, tokenizer)``: the model (in eval mode) and its tokenizer
    (``None`` if the checkpoint has none) from a checkpoint folder or a training run's folder."""
    checkpoint = load_checkpoint(dir, device=device)
    return checkpoint.model, checkpoint.tokenizer


def _pick_device(device: str | torch.device | None) -> torch.device:
    """None -> the CPU; "auto" -> the best available; anything else checked (an unknown name, or CUDA on a
    machine without a GPU, is a ConfigError naming it)."""
    from glassformer.train.distributed import resolve_device

    return torch.device("cpu") if device is None else resolve_device(device)


def _check_manifest(manifest: dict, where: Path) -> dict[str, dict]:
    """The manifest's ``files`` table, after checking the types a hand edit could break."""
    version, files = manifest.get("version", 0), manifest.get("files", {})
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{where}: 'version' must be an integer, got {version!r}")
    if not isinstance(files, dict):
        raise CheckpointError(f"{where}: 'files' must map file names to {{bytes, sha256}}, got {type(files).__name__}")
    for name, entry in files.items():
        ok = isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)
        if not ok or "/" in name or "\\" in name or name in ("", ".", ".."):
            raise CheckpointError(f"{where}: the entry for file {name!r} must be a plain file name with "
                                  f"{{\"bytes\": int, \"sha256\": str}}, got {entry!r}")
    if not isinstance(manifest.get("has_tokenizer", False), bool):
        raise CheckpointError(f"{where}: 'has_tokenizer' must be true or false, got {manifest['has_tokenizer']!r}")
    return files


def _verify(path: Path, expected: dict) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing (listed in {MANIFEST})")
    size = path.stat().st_size
    if size != expected.get("bytes"):
        raise CheckpointError(f"{path} is truncated or altered: {size} bytes, expected {expected.get('bytes')}")
    if _sha256(path) != expected.get("sha256"):
        raise CheckpointError(f"{path} is corrupted: its SHA-256 does not match {MANIFEST}")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, RuntimeError, OSError) as e:
        raise CheckpointError(f"{path} could not be read as safetensors: {e}") from None


def _load_tokenizer(path: Path) -> Any:
    from glassformer.train.tokenizers import load_tokenizer

    try:
        return load_tokenizer(path)
    except CheckpointError:
        raise
    except (ValueError, KeyError, OSError) as e:
        raise CheckpointError(f"the tokenizer in {path} could not be loaded: {e}") from None
