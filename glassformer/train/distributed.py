"""Devices and distributed data parallelism (DDP) under ``torchrun``.

``torchrun --nproc_per_node N -m glassformer train ...`` starts N processes with the environment
variables RANK, LOCAL_RANK and WORLD_SIZE set. Each process builds the same model (same seed),
draws the same global batch from the same seeded generator and keeps its own shard of it
(rows ``rank * B/N`` to ``(rank + 1) * B/N``). DDP averages the gradients, so every step equals
one process training on the whole global batch. The backend is NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from glassformer.errors import ConfigError


def auto_device() -> torch.device:
    """The best available device: cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``"auto"`` (or None) -> :func:`auto_device`; a bare ``"cuda"`` under torchrun -> this process's GPU."""
    if device is None or str(device) == "auto":
        device = auto_device()
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"device = {device!r} is not a device PyTorch knows: {e}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device = 'cuda' but PyTorch sees no CUDA GPU; use device='auto' or 'cpu'")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) training job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, metrics and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info_from_env() -> DistInfo:
    """Read RANK / LOCAL_RANK / WORLD_SIZE as set by ``torchrun`` (single process if unset)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group if launched by torchrun (idempotent); a no-op for a single process."""
    info = dist_info_from_env()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    if dist.is_initialized():
        info = DistInfo(rank=dist.get_rank(), local_rank=info.local_rank, world_size=dist.get_world_size())
    return info


def shard_rows(n_rows: int, info: DistInfo) -> slice:
    """The rows of a global batch of ``n_rows`` that this rank trains on (an equal contiguous share)."""
    if n_rows % info.world_size:
        raise ConfigError(
            f"batch_size = {n_rows} must be divisible by the number of processes ({info.world_size})"
        )
    per_rank = n_rows // info.world_size
    return slice(info.rank * per_rank, (info.rank + 1) * per_rank)


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks (identity for a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (call once at the end of a torchrun job)."""
    if dist.is_initialized():
        dist.destroy_process_group()
