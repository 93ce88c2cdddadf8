"""Where a Hugging Face model comes from: an in-memory ``transformers`` model, a local folder, or the Hub.

Whatever the source, what the converters see is the same pair:

* ``config``  -- the model's ``config.json`` as a dict (``model_type`` says which converter reads it);
* ``weights`` -- a :class:`Weights`, the checkpoint's tensors by name, with errors that name what is missing.

A folder must hold ``config.json`` and one or more ``*.safetensors`` files (sharded checkpoints are read
through ``model.safetensors.index.json``). Pickled ``pytorch_model.bin`` files are never loaded: they can run
arbitrary code. The Hub is only contacted when the argument is not a local path and looks like a repo id
("gpt2", "org/name"); offline, that fails with a message saying so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from glassformer.errors import CheckpointError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class Weights:
    """A checkpoint's tensors, looked up by their Hugging Face name.

    Hugging Face stores the same model with or without its head's wrapper prefix (``transformer.h.0...`` in a
    GPT2LMHeadModel, ``h.0...`` in a bare GPT2Model), so every lookup tries each of ``prefixes`` in turn.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], source: str, prefixes: tuple[str, ...] = ("",)):
        self.tensors = tensors
        self.source = source
        self.prefixes = prefixes

    def with_prefixes(self, *prefixes: str) -> Weights:
        return Weights(self.tensors, self.source, prefixes)

    def key(self, name: str) -> str | None:
        """The full name ``name`` is stored under (the first prefix that has it), or None."""
        return next((prefix + name for prefix in self.prefixes if prefix + name in self.tensors), None)

    def get(self, name: str) -> torch.Tensor | None:
        """The tensor called ``name`` (under any prefix), as float32 on the CPU; None if absent."""
        key = self.key(name)
        return None if key is None else self.tensors[key].detach().to("cpu", torch.float32)

    def __getitem__(self, name: str) -> torch.Tensor:
        tensor = self.get(name)
        if tensor is None:
            tried = ", ".join(repr(p + name) for p in self.prefixes)
            raise CheckpointError(f"{self.source}: the checkpoint has no tensor {tried}")
        return tensor

    def take(self, name: str, *shape: int) -> torch.Tensor:
        """The tensor called ``name``, checked to have ``shape``: a mismatch means config.json and the
        weights disagree, and is reported with both shapes rather than failing later in a reshape."""
        tensor = self[name]
        if tuple(tensor.shape) != shape:
            raise CheckpointError(
                f"{self.source}: tensor {self.key(name)!r} has shape {tuple(tensor.shape)}, "
                f"but config.json implies {shape}"
            )
        return tensor

    def __contains__(self, name: str) -> bool:
        return self.key(name) is not None


@dataclass
class HFSource:
    config: dict[str, Any]  # config.json
    weights: Weights
    name: str  # for error messages: a folder, a repo id, or the model's class name

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")


_REQUIRED = object()


def config_value(source: HFSource, key: str, default: Any = _REQUIRED) -> Any:
    """``config.json[key]``, or ``default``; a required key that is absent raises CheckpointError."""
    value = source.config.get(key)
    if value is not None:
        return value
    if default is _REQUIRED:
        raise CheckpointError(f"{source.name}: config.json has no {key!r} (model_type {source.model_type!r})")
    return default


def read_source(model_or_path: Any) -> HFSource:
    """An in-memory ``transformers`` model, a folder path, or a Hub repo id -> :class:`HFSource`."""
    if isinstance(model_or_path, torch.nn.Module):
        return _from_module(model_or_path)
    if not isinstance(model_or_path, (str, Path)):
        raise CheckpointError(
            f"from_hf expects a transformers model, a folder path or a Hub model name, "
            f"got {type(model_or_path).__name__}"
        )
    path = Path(model_or_path).expanduser()
    if path.exists() or isinstance(model_or_path, Path) or not _REPO_ID.match(str(model_or_path)):
        return read_folder(path)
    return read_folder(_download(str(model_or_path)), name=str(model_or_path))


def _from_module(model: torch.nn.Module) -> HFSource:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise CheckpointError(
            f"{type(model).__name__} is not a transformers model (it has no .config); to import a glassformer "
            "checkpoint use glassformer.load"
        )
    name = type(model).__name__
    return HFSource(config.to_dict(), Weights(dict(model.state_dict()), name), name)


def read_folder(path: Path, name: str | None = None) -> HFSource:
    """Read ``config.json`` and the ``*.safetensors`` tensors of a saved Hugging Face model."""
    name = name or str(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such folder (expected a Hugging Face model folder with config.json)")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file; pass the folder that holds config.json and *.safetensors")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: missing config.json (not a Hugging Face model folder)")
    try:
        config = json.loads(config_file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_file}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file}: expected a JSON object, got {type(config).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    for file in _safetensors_files(path):
        tensors.update(_load_safetensors(file))
    return HFSource(config, Weights(tensors, name), name)


def _safetensors_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: not a valid safetensors index ({e})") from None
        files = [path / f for f in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{index} lists shard(s) that are missing: {', '.join(missing)}")
        return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickled = [f.name for f in path.glob("*.bin")]
        hint = (
            f" (found {', '.join(pickled)}: pickled weights are not loaded; re-save the model with "
            "save_pretrained(..., safe_serialization=True))" if pickled else ""
        )
        raise CheckpointError(f"{path}: no *.safetensors weights file{hint}")
    return files


def _load_safetensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except Exception as e:  # safetensors raises its own SafetensorError, or OSError/ValueError on a bad file
        raise CheckpointError(f"{file}: corrupt or truncated safetensors file ({type(e).__name__}: {e})") from None


def _download(repo_id: str) -> Path:
    """Fetch config.json + safetensors of a Hub model (only when the user names one and is online)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            f"{repo_id!r} is not a local folder, and huggingface_hub (to download it) is not installed"
        ) from None
    try:
        folder = snapshot_download(
            repo_id, allow_patterns=["config.json", "*.safetensors", "model.safetensors.index.json"]
        )
    except Exception as e:
        raise CheckpointError(
            f"{repo_id!r} is not a local folder, and downloading it from the Hugging Face Hub failed "
            f"({type(e).__name__}: {e}). Offline? Download the model where there is network and pass its "
            "folder (config.json + *.safetensors)."
        ) from None
    return Path(folder)
