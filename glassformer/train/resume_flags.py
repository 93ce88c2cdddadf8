"""``glassformer train --resume``: which flags may change when a run continues, and a clear refusal for
the others (a resumed run is the run that was saved: its task, model and optimiser settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glassformer.errors import ConfigError

# What a resumed run may change: how long it trains, where and how it runs, what it prints.
RESUMABLE = ("steps", "device", "dtype", "compile", "quiet")
# Flags that describe the data; each is compared with the saved task's options.
TASK_FLAGS = ("task", "text", "option", "block_size", "config")


def check_resume_flags(args, trainer, model_flags: tuple[str, ...]) -> None:
    """Refuse ``--resume`` with a flag whose value differs from the saved run's, naming the flag and both
    values; refuse ``--steps`` that would not train (the run is already there)."""
    out = Path(args.out)
    if args.steps is not None and args.steps <= trainer.step:
        raise ConfigError(
            f"the run in {out} is at step {trainer.step} already: --steps {args.steps} would train nothing; "
            f"give --steps > {trainer.step} to train longer (the saved run planned {trainer.config.steps})"
        )
    saved_train = trainer.config.to_dict()
    changed: list[str] = []
    for name, value in sorted(vars(args).items()):
        if value is None or name in RESUMABLE or name in ("out", "resume", "func", "command") or value == []:
            continue
        if name in saved_train:
            saved = saved_train[name]
        elif name in model_flags:
            saved = getattr(trainer.model.config, name)
        elif name in TASK_FLAGS:
            saved = _saved_task_value(name, trainer.spec)
        else:
            continue
        if saved is not _UNKNOWN and _same(value, saved):
            continue
        flag = "--" + name.replace("_", "-")
        changed.append(f"{flag} {_show(value)} (the run has {_show(saved)})" if saved is not _UNKNOWN else flag)
    if changed:
        raise ConfigError(
            f"--resume continues the run in {out} as it was saved, but these flags would change it: {'; '.join(changed)}. "
            f"Drop them (only {', '.join('--' + f for f in RESUMABLE)} may change), or train a new run into another --out"
        )


_UNKNOWN = object()


def _saved_task_value(name: str, spec: dict) -> Any:
    options = spec.get("options", {}) if isinstance(spec, dict) else {}
    if name == "task":
        return spec.get("name")
    if name == "text":
        return options.get("path", _UNKNOWN)
    if name == "block_size":
        return options.get("block_size", _UNKNOWN)
    return _UNKNOWN  # --option / --config: not compared value by value; refused


def _same(value: Any, saved: Any) -> bool:
    if isinstance(saved, str) and isinstance(value, str) and Path(saved).is_absolute():
        return Path(value).resolve() == Path(saved)
    return value == saved


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
