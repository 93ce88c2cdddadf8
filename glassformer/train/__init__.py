"""Training: tasks and data, the training loop, checkpoints, distributed training.

    >>> from glassformer.train import Trainer, TrainConfig, get_task, model_for_task
    >>> task = get_task("reverse", length=8)
    >>> model = model_for_task(task, "decoder", d_model=64, n_layers=2, n_heads=4)
    >>> summary = Trainer(model, task, TrainConfig(steps=300, lr=3e-3, out_dir="runs/reverse")).train()
    >>> model, tokenizer = glassformer.load("runs/reverse")
"""

from glassformer.train.batch import Batch
from glassformer.train.checkpoint import Checkpoint, load, load_checkpoint, save_checkpoint, save_model
from glassformer.train.data import TextTask
from glassformer.train.metrics import accuracy, loss_fn
from glassformer.train.optim import lr_at, make_optimizer, param_groups
from glassformer.train.tasks import TASKS, Task, get_task, list_tasks
from glassformer.train.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer
from glassformer.train.trainer import (
    TrainConfig,
    Trainer,
    TrainingDiverged,
    model_for_task,
    task_from_spec,
    task_spec,
)

__all__ = [
    "BPETokenizer",
    "Batch",
    "CharTokenizer",
    "Checkpoint",
    "TASKS",
    "Task",
    "TextTask",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "accuracy",
    "get_task",
    "list_tasks",
    "load",
    "load_checkpoint",
    "load_tokenizer",
    "loss_fn",
    "lr_at",
    "make_optimizer",
    "model_for_task",
    "param_groups",
    "save_checkpoint",
    "save_model",
    "task_from_spec",
    "task_spec",
]
