"""The training loop: AdamW, warm-up + cosine schedule, gradient clipping and accumulation, periodic
evaluation and checkpoints, DDP under torchrun, bf16 autocast on CUDA.

One optimizer step on a global batch of B rows split into ``grad_accum`` micro-batches (and over
``world_size`` processes) minimises the same loss as one pass over all B rows:

    L = (1 / N) * sum_{counted targets t} -log p(t)        N = targets counted in the whole global batch

Each micro-batch m contributes ``loss_fn(m) * N_m / N`` (``loss_fn`` is a mean over its N_m
targets), multiplied by ``world_size`` because DDP averages gradients over processes. So gradient
accumulation and DDP give the same gradients as the large batch, up to float rounding.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from glassformer.errors import CheckpointError, ConfigError, GlassformerError, OutputError
from glassformer.model import ModelConfig, Transformer
from glassformer.train import distributed as D
from glassformer.train.checkpoint import Checkpoint, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from glassformer.train.file_tasks import file_task_class
from glassformer.train.file_tasks import rebuild as rebuild_file_task
from glassformer.train.metrics import accuracy_counts, loss_fn
from glassformer.train.optim import lr_at, make_optimizer, set_lr
from glassformer.train.run_dir import RunLock, writable_dir
from glassformer.train.tasks import get_task

EVAL_SEED_OFFSET = 1_000_003  # evaluation batches come from their own seeded stream


class TrainingDiverged(GlassformerError):
    """The loss (or the gradient norm) became NaN or infinite; training stopped."""


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run. ``None`` fields are derived in ``__post_init__``."""

    steps: int = 2000  # optimizer steps
    batch_size: int = 64  # global batch (rows), over all micro-batches and processes
    lr: float = 1e-3  # peak learning rate
    min_lr: float | None = None  # -> lr / 10: where the cosine decay ends
    warmup_steps: int = 100
    weight_decay: float = 0.1  # on matrices only (not norms, biases, embeddings)
    decay_embeddings: bool = False
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float | None = 1.0  # max global gradient norm; None or 0 = no clipping
    grad_accum: int = 1  # micro-batches per step
    eval_every: int = 200  # steps between evaluations (0 = only at the end)
    eval_batches: int = 4
    eval_batch_size: int | None = None  # -> batch_size
    save_every: int | None = None  # steps between checkpoints -> eval_every (0 = only at the end)
    stop_at_accuracy: float | None = None  # stop early once an evaluation reaches this sequence accuracy
    log_every: int = 10  # steps between training records in metrics.jsonl
    seed: int = 0
    device: str = "auto"  # auto = cuda, mps or cpu
    dtype: str = "auto"  # auto = bfloat16 autocast on CUDA, float32 elsewhere; or float32 / bfloat16
    compile: bool | str = False  # torch.compile the model (True: the default inductor backend; a str: that backend)
    out_dir: str | None = None  # metrics.jsonl, summary.json and checkpoint/ go here (None: write nothing)
    quiet: bool = False  # no progress bar

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"TrainConfig.{name} = {value!r} must be a positive integer")
        if isinstance(self.eval_batches, bool) or not isinstance(self.eval_batches, int) or self.eval_batches < 1:
            raise ConfigError(f"TrainConfig.eval_batches = {self.eval_batches!r} must be a positive integer")
        for name in ("warmup_steps", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"TrainConfig.{name} = {value!r} must be an integer >= 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"TrainConfig.lr = {self.lr!r} must be a positive number")
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"TrainConfig.min_lr = {self.min_lr!r} must be in [0, lr = {self.lr}]")
        if self.weight_decay < 0:
            raise ConfigError(f"TrainConfig.weight_decay = {self.weight_decay!r} must be >= 0")
        if self.grad_clip is not None and self.grad_clip < 0:
            raise ConfigError(f"TrainConfig.grad_clip = {self.grad_clip!r} must be >= 0 (0 or None: no clipping)")
        if self.eval_batch_size is None:
            self.eval_batch_size = self.batch_size
        if self.save_every is None:
            self.save_every = self.eval_every
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"TrainConfig.batch_size = {self.batch_size} must be divisible by grad_accum = {self.grad_accum}"
            )
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"TrainConfig.dtype = {self.dtype!r} is not one of 'auto', 'float32', 'bfloat16'")
        if self.stop_at_accuracy is not None and not 0 < self.stop_at_accuracy <= 1:
            raise ConfigError(f"TrainConfig.stop_at_accuracy = {self.stop_at_accuracy!r} must be in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**data)


def model_for_task(task, arch: str = "decoder", **sizes: Any) -> Transformer:
    """A Transformer shaped for ``task``: its vocabulary, context length and (encoder) class count."""
    if arch not in task.archs:
        raise ConfigError(f"task {task.name!r} supports arch {', '.join(task.archs)}, not {arch!r}")
    config = ModelConfig(
        arch=arch,
        d_vocab=len(task.tokenizer),
        n_ctx=task.n_ctx(arch),
        n_classes=task.n_classes if arch == "encoder" else 0,
        **sizes,
    )
    return Transformer(config)


def task_spec(task) -> dict:
    """The JSON description a checkpoint keeps so ``eval``/``sample`` can rebuild the task:
    ``{"name": ..., "options": {...}, "format": N}`` (a text file's path made absolute; N = the task's
    ``format_version``, so a checkpoint trained on an older sequence layout is refused, not mis-scored)."""
    options = dict(getattr(task, "options", {}) or {})
    if "path" in options:  # a data file's task: rebuilt from the file wherever the run is read
        options["path"] = str(Path(options["path"]).resolve())
    return {"name": task.name, "options": options, "format": getattr(task, "format_version", 1)}


def task_from_spec(spec: dict | None, tokenizer=None):
    """Rebuild a task from :func:`task_spec` output (a text task reuses the checkpoint's tokenizer)."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise CheckpointError(f"the checkpoint has no task spec to rebuild its task from (got {spec!r})")
    options = dict(spec.get("options", {}))
    if file_task_class(spec["name"]) is not None:  # text, masked-text, pairs, labels, digits, images
        return rebuild_file_task(spec["name"], options, tokenizer)
    if spec["name"] == "rasp":  # a RASP program's outputs (glassformer.rasp.task builds on this package: import late)
        from glassformer.rasp.task import RaspTask

        return RaspTask(**options)
    task = get_task(spec["name"], **options)
    saved = spec.get("format", 1)  # checkpoints from before format versions hold the first layout
    if saved != task.format_version:
        raise CheckpointError(
            f"the checkpoint was trained on {task.name!r} format {saved}, but the task now lays out its sequences "
            f"as format {task.format_version} ({task.description}): retrain it"
        )
    return task


class _TaskForward(nn.Module):
    """``model`` called the way a batch needs it (the unit DDP and torch.compile wrap):
    classification -> ``model.classify``; encoder-decoder -> ``model(inputs, src=...)``; else LM."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, inputs, attention_mask=None, src=None, src_attention_mask=None, classify: bool = False):
        if classify:
            return self.model.classify(inputs, attention_mask=attention_mask)  # [batch, n_classes]
        if src is not None:
            return self.model(inputs, src=src, attention_mask=attention_mask, src_attention_mask=src_attention_mask)
        return self.model(inputs, attention_mask=attention_mask)  # [batch, pos, d_vocab_out]


def _call(forward: nn.Module, batch) -> torch.Tensor:
    return forward(
        batch.inputs,
        attention_mask=batch.attention_mask,
        src=batch.src,
        src_attention_mask=batch.src_attention_mask,
        classify=batch.is_classification,
    )


@torch.no_grad()
def evaluate(model: Transformer, task, *, n_batches: int = 4, batch_size: int = 64, seed: int = 0,
             dist: D.DistInfo | None = None, autocast=nullcontext) -> dict[str, float]:
    """Mean loss, token accuracy and sequence accuracy of ``model`` on ``n_batches`` batches of
    ``task`` drawn from a generator seeded with ``seed``. Under DDP (``dist``) each process scores
    an equal share of every batch and the counts are summed over processes."""
    dist = dist or D.DistInfo()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    totals = torch.zeros(5, dtype=torch.float64)  # summed loss, token hits, targets, sequence hits, sequences
    if isinstance(n_batches, bool) or not isinstance(n_batches, int) or n_batches < 1:
        raise ConfigError(f"evaluate: n_batches = {n_batches!r} must be a positive integer")
    for _ in range(n_batches):
        batch = task.batch(batch_size, model.config.arch, generator=generator)
        batch = batch[D.shard_rows(batch_size, dist)].to(device)
        with autocast():
            logits = _call(_TaskForward(model), batch).float()
        token_hits, n, seq_hits, rows = accuracy_counts(logits, batch)
        totals += torch.tensor([float(loss_fn(logits, batch, reduction="sum")), token_hits, n, seq_hits, rows], dtype=torch.float64)
    model.train(was_training)
    if dist.enabled:
        totals = D.all_reduce_sum(totals.to(device)).cpu()
    loss, token_hits, n, seq_hits, rows = totals.tolist()
    metrics = {"loss": loss / n, "token_accuracy": token_hits / n, "sequence_accuracy": seq_hits / rows}
    for alias, name in getattr(task, "metric_aliases", {}).items():  # e.g. labels: "accuracy"; masked LM: "masked_accuracy"
        metrics[alias] = metrics[name]
    return metrics


class Trainer:
    """Trains ``model`` on ``task`` (anything with ``.batch(batch_size, arch, generator)``).

    ``eval_task`` (default: the task's held-out split, ``task.with_split("val")``) supplies the
    evaluation batches, from their own seeded stream.
    ``trainer.train()`` returns the summary of the final evaluation; ``trainer.losses`` holds every
    step's training loss. Resume with :meth:`Trainer.from_checkpoint`.
    """

    def __init__(self, model: Transformer, task, config: TrainConfig | None = None, *, eval_task=None, tokenizer=None, spec: dict | None = None):
        self.config = config = config or TrainConfig()
        self.task = task
        self.eval_task = eval_task if eval_task is not None else _held_out(task)
        self.tokenizer = tokenizer if tokenizer is not None else getattr(task, "tokenizer", None)
        self.spec = spec if spec is not None else task_spec(task)
        self.arch = model.config.arch
        self.device = D.resolve_device(config.device, D.dist_info_from_env().local_rank)
        self.dist = D.init_distributed(self.device)
        self.model = model.to(self.device)
        if self.tokenizer is not None:
            model.tokenizer = self.tokenizer  # the trained model carries its tokenizer
        self.amp_dtype = self._amp_dtype()
        self.optimizer = make_optimizer(
            self.model, config.lr, config.weight_decay, betas=(config.beta1, config.beta2), decay_embeddings=config.decay_embeddings
        )
        self.forward = self._wrap(self.model)
        self.generator = torch.Generator().manual_seed(config.seed)  # the task's training stream
        self.step = 0
        self.tokens_seen = 0
        self.train_seconds = 0.0  # time spent in train_step (for tokens/s)
        self.wall_seconds = 0.0  # time spent in train(), evaluation and checkpoints included
        self.losses: list[float] = []  # training loss of every step run by this Trainer
        self.last_saved_step: int | None = None
        self.last_eval: dict | None = None
        self.out_dir = Path(config.out_dir) if config.out_dir else None
        self._stop_requested = False
        self._last_lr, self._last_grad_norm = config.lr, float("nan")

    # -- set-up --------------------------------------------------------------------------------------

    def _amp_dtype(self) -> torch.dtype | None:
        if self.config.dtype == "bfloat16" or (self.config.dtype == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return None

    def _wrap(self, model: Transformer) -> nn.Module:
        forward: nn.Module = _TaskForward(model)
        if self.config.compile:
            backend = self.config.compile if isinstance(self.config.compile, str) else "inductor"
            forward = torch.compile(forward, backend=backend)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            classify = self.arch == "encoder" and model.config.n_classes > 0
            forward = DistributedDataParallel(forward, find_unused_parameters=classify)  # classify leaves W_U unused
        return forward

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- one step ------------------------------------------------------------------------------------

    def train_step(self) -> float:
        """One optimizer step on one global batch; returns its loss (averaged over all processes)."""
        cfg = self.config
        lr = lr_at(self.step, lr=cfg.lr, min_lr=cfg.min_lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps)
        set_lr(self.optimizer, lr)
        global_batch = self.task.batch(cfg.batch_size, self.arch, generator=self.generator)
        n_global = global_batch.n_targets
        shard = global_batch[D.shard_rows(cfg.batch_size, self.dist)]  # this process's rows
        rows = shard.inputs.shape[0]
        if rows % cfg.grad_accum:
            raise ConfigError(f"{rows} rows per process do not split into grad_accum = {cfg.grad_accum} micro-batches")
        micro_rows = rows // cfg.grad_accum
        self.forward.train()
        total = torch.zeros((), device=self.device)
        for i in range(cfg.grad_accum):
            micro = shard[i * micro_rows : (i + 1) * micro_rows].to(self.device)
            last = i == cfg.grad_accum - 1
            sync = nullcontext() if last or not self.dist.enabled else self.forward.no_sync()
            with sync:
                with self._autocast():
                    logits = _call(self.forward, micro)
                loss = loss_fn(logits.float(), micro) * (micro.n_targets / n_global * self.dist.world_size)
                loss.backward()
            total += loss.detach()
        loss_value = float(D.all_reduce_sum(total)) / self.dist.world_size
        grad_norm = float("nan")
        if cfg.grad_clip:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
        if not math.isfinite(loss_value) or (cfg.grad_clip and not math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(self._divergence_message(loss_value, grad_norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += global_batch.n_tokens
        self.losses.append(loss_value)
        self._last_lr, self._last_grad_norm = lr, grad_norm
        return loss_value

    def _divergence_message(self, loss: float, grad_norm: float) -> str:
        what = f"loss = {loss}" if not math.isfinite(loss) else f"gradient norm = {grad_norm}"
        where = (
            f"the last good checkpoint (step {self.last_saved_step}) is kept in {self.out_dir / 'checkpoint'}"
            if self.last_saved_step is not None and self.out_dir is not None
            else "no checkpoint was saved before this step"
        )
        return (
            f"training diverged at step {self.step + 1}: {what}; stopped without updating the model. {where}. "
            "Try a lower lr, more warmup_steps, or grad_clip."
        )

    # -- evaluation ----------------------------------------------------------------------------------

    def evaluate(self, n_batches: int | None = None, seed: int | None = None) -> dict[str, float]:
        """:func:`evaluate` on ``eval_task``; seed default ``config.seed + 1000003``, so repeated
        evaluations of one run see the same examples."""
        cfg = self.config
        return evaluate(
            self.model,
            self.eval_task,
            n_batches=cfg.eval_batches if n_batches is None else n_batches,
            batch_size=cfg.eval_batch_size,
            seed=cfg.seed + EVAL_SEED_OFFSET if seed is None else seed,
            dist=self.dist,
            autocast=self._autocast,
        )

    # -- the loop ------------------------------------------------------------------------------------

    def train(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train until ``config.steps`` (or, to simulate an interruption, until step ``stop_after``).

        Evaluates every ``eval_every`` steps and saves a checkpoint every ``save_every`` steps and
        at the end. Returns the summary (final evaluation + steps, tokens_per_second, seconds),
        which is also written to ``out_dir/summary.json``. Ctrl-C (single process) finishes the
        current step, saves a checkpoint and raises KeyboardInterrupt saying where.

        ``out_dir`` is checked for writing first and locked for the whole run (``run_dir.RunLock``):
        a second training into the same folder is refused with an OutputError.
        """
        if self.out_dir is None or not self.dist.is_main:
            return self._train(stop_after)
        writable_dir(self.out_dir)
        with RunLock(self.out_dir):
            return self._train(stop_after)

    def _train(self, stop_after: int | None) -> dict[str, Any]:
        cfg = self.config
        started, seconds_before = time.perf_counter(), self.wall_seconds
        metrics = self._open_metrics()
        bar = self._progress_bar()
        previous_handler = self._catch_interrupt()
        reached = False
        try:
            while self.step < cfg.steps and (stop_after is None or self.step < stop_after):
                t0 = time.perf_counter()
                loss = self.train_step()
                self.train_seconds += time.perf_counter() - t0
                self.wall_seconds = seconds_before + (time.perf_counter() - started)
                tokens_per_second = self.tokens_seen / max(self.train_seconds, 1e-9)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self._log(metrics, {"step": self.step, "loss": loss, "lr": self._last_lr, "grad_norm": self._last_grad_norm, "tokens_per_second": tokens_per_second})
                done = self.step == cfg.steps
                if cfg.eval_every and self.step % cfg.eval_every == 0 and not done:
                    self.last_eval = self.evaluate()
                    self._log(metrics, {"step": self.step, **{f"eval_{k}": v for k, v in self.last_eval.items()}})
                    reached = cfg.stop_at_accuracy is not None and self.last_eval["sequence_accuracy"] >= cfg.stop_at_accuracy
                if bar is not None:
                    bar.update(1)
                    if self.step % 10 == 0 or done:
                        bar.set_postfix(loss=f"{loss:.4f}", **self._bar_eval(), tok_s=f"{tokens_per_second:,.0f}", refresh=False)
                if self._stop_requested or reached:
                    break
                if cfg.save_every and self.step % cfg.save_every == 0 and not done:
                    self.save()
            if self._stop_requested:
                saved = self.save()
                where = (f"the checkpoint is saved in {saved}; continue with: glassformer train --resume --out {self.out_dir}"
                         if saved is not None else "nothing was saved (no out_dir)")
                raise KeyboardInterrupt(f"interrupted at step {self.step}: {where}")
            if stop_after is not None and self.step < cfg.steps and not reached:
                self.save()
                return {"steps": self.step, "interrupted": True}
            if not reached:  # (when stopping early, the evaluation that reached the target is the final one)
                self.last_eval = self.evaluate()
                self._log(metrics, {"step": self.step, **{f"eval_{k}": v for k, v in self.last_eval.items()}})
            final = self.last_eval
            self.wall_seconds = seconds_before + (time.perf_counter() - started)
            summary = {
                **final,
                "steps": self.step,
                "tokens_per_second": self.tokens_seen / max(self.train_seconds, 1e-9),
                "seconds": self.wall_seconds,
            }
            self.save()
            if self.out_dir is not None and self.dist.is_main:
                (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            return summary
        finally:
            if bar is not None:
                bar.close()
            if metrics is not None:
                metrics.close()
            self._restore_interrupt(previous_handler)

    def _open_metrics(self):
        if self.out_dir is None or not self.dist.is_main:
            return None
        path = writable_dir(self.out_dir) / "metrics.jsonl"
        try:
            if path.exists():  # resuming: forget records of steps after the checkpoint (they will be redone)
                kept = [line for line in path.read_text().splitlines() if line.strip() and _record_step(line) <= self.step]
                path.write_text("".join(line + "\n" for line in kept))
            return open(path, "a")
        except OSError as e:
            raise OutputError(f"{path} cannot be written: {e.strerror or e}") from None

    def _log(self, metrics, record: dict) -> None:
        if metrics is not None:
            try:
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
            except OSError as e:
                raise OutputError(f"{metrics.name} cannot be written at step {self.step}: {e.strerror or e}") from None

    def _bar_eval(self) -> dict[str, str]:
        """The last evaluation for the progress bar: sequence accuracy, or (text, where a whole window is never
        'right') the validation loss."""
        if not self.last_eval:
            return {}
        if self.spec.get("name") in ("text", "masked-text"):  # language modelling: no whole-window accuracy
            return {"val_loss": f"{self.last_eval['loss']:.4f}"}
        return {"acc": f"{self.last_eval['sequence_accuracy']:.3f}"}

    def _progress_bar(self):
        if self.config.quiet or not self.dist.is_main:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.config.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)

    def _catch_interrupt(self):
        if self.dist.enabled or threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signum, frame):
            if self._stop_requested:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop_requested = True

        return signal.signal(signal.SIGINT, request_stop)

    def _restore_interrupt(self, previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

    # -- checkpoints ---------------------------------------------------------------------------------

    def save(self, dir: str | Path | None = None) -> Path | None:
        """Save a resumable checkpoint (default ``out_dir/checkpoint``; rank 0 only)."""
        if dir is None:
            if self.out_dir is None:
                return None
            dir = self.out_dir / "checkpoint"
        if self.dist.is_main:
            state, tensors = self._training_state()
            try:
                save_checkpoint(dir, self.model, tokenizer=self.tokenizer, task=self.spec, optimizer=self.optimizer,
                                trainer_state=state, trainer_tensors=tensors)
            except OSError as e:
                kept = f"; the checkpoint of step {self.last_saved_step} is kept" if self.last_saved_step is not None else ""
                raise OutputError(f"the checkpoint of step {self.step} cannot be written to {dir}: {e.strerror or e}{kept}") from None
            self.last_saved_step = self.step
        D.barrier()
        return Path(dir)

    def _training_state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        rng_json, rng_tensors = capture_rng(self.generator, self.device)
        state = {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "train_seconds": self.train_seconds,
            "wall_seconds": self.wall_seconds,
            "arch": self.arch,
            "train_config": self.config.to_dict(),
            "last_eval": self.last_eval,
            "rng": rng_json,
        }
        return state, rng_tensors

    def load_training_state(self, checkpoint: Checkpoint) -> None:
        """Restore optimizer, counters and every RNG from a checkpoint written by :meth:`save`."""
        if not checkpoint.resumable:
            raise CheckpointError(f"{checkpoint.path} has no optimizer/training state: it cannot be resumed")
        state = checkpoint.trainer_state
        try:
            self.optimizer.load_state_dict(checkpoint.optimizer_state)
            restore_rng(state["rng"], checkpoint.trainer_tensors, self.generator, self.device)
            self.step, self.tokens_seen = int(state["step"]), int(state["tokens_seen"])
            self.train_seconds, self.wall_seconds = float(state["train_seconds"]), float(state["wall_seconds"])
            self.last_eval = state.get("last_eval")
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"the training state in {checkpoint.path} is incomplete or inconsistent: {e!r}") from None
        self.last_saved_step = self.step

    @classmethod
    def from_checkpoint(cls, dir: str | Path, task=None, *, eval_task=None, **overrides: Any) -> Trainer:
        """Resume training from a checkpoint (or run) folder. ``task`` defaults to the saved task spec;
        ``overrides`` change TrainConfig fields (e.g. ``steps`` to train longer, ``device``)."""
        checkpoint = load_checkpoint(dir)
        state = checkpoint.trainer_state
        if state is None:
            raise CheckpointError(f"{checkpoint.path} has no training state: it cannot be resumed")
        _check_state_types(state, checkpoint.path)
        try:
            config = TrainConfig.from_dict({**state["train_config"], **overrides})
        except (ConfigError, TypeError) as e:
            raise CheckpointError(f"{checkpoint.path}: the saved training config is not valid: {e}") from None
        if task is None:
            task = task_from_spec(checkpoint.task, tokenizer=checkpoint.tokenizer)
        trainer = cls(checkpoint.model, task, config, eval_task=eval_task, tokenizer=checkpoint.tokenizer, spec=checkpoint.task)
        trainer.load_training_state(checkpoint)
        return trainer


_STATE_TYPES = {"step": int, "tokens_seen": int, "train_seconds": (int, float), "wall_seconds": (int, float),
                "train_config": dict, "rng": dict}


def _check_state_types(state: Any, path: Path) -> None:
    """A hand-edited trainer state with a missing field or a wrong type is a CheckpointError naming it."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the training state must be a JSON object, got {type(state).__name__}")
    for name, kind in _STATE_TYPES.items():
        value = state.get(name)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise CheckpointError(f"{path}: the training state's {name!r} is {value!r}, which is not a valid {name}")
    if state["step"] < 0:
        raise CheckpointError(f"{path}: the training state's step is {state['step']}, which is negative")


def _held_out(task):
    """The task's evaluation split (``with_split("val")``), or the task itself if it has none."""
    with_split = getattr(task, "with_split", None)
    return with_split("val") if with_split is not None else task


def _record_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 0
