"""The tuned lens (Belrose et al. 2023): a learned affine translator per layer before the logit lens.

For the stream ``resid_l`` entering block ``l``,

    translated_l = resid_l + resid_l W[l] + b[l]          W [n_layers, d_model, d_model], b [n_layers, d_model]
    p_l          = softmax(Norm_final(translated_l) W_U + b_U)

(W = 0, b = 0 is the plain logit lens). The translators are trained to minimise

    KL(p_final || p_l) = E_{y ~ p_final}[-log p_l(y)] - H(p_final)

with the model frozen. The project's :class:`~glassformer.train.trainer.Trainer` minimises a
cross-entropy on target tokens, so :class:`LensDistillationTask` draws each target from the model's
own final distribution: the expected cross-entropy is then exactly the KL above plus a constant, and
the trainer's gradient is an unbiased estimate of the KL's gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.lens.cache import ModelInput, call_args
from glassformer.lens.logit_lens import LensResult, logit_lens, resid_names, unembed_resid
from glassformer.train.batch import Batch


class TunedLens(nn.Module):
    """One affine translator per block input of ``model``'s main stack (initialised to the identity)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        n_layers, d_model = len(model.blocks), model.config.d_model
        self.W = nn.Parameter(torch.zeros(n_layers, d_model, d_model))  # translated = resid + resid W[l] + b[l]
        self.b = nn.Parameter(torch.zeros(n_layers, d_model))
        self.losses: list[float] = []  # training loss per step (filled by train_tuned_lens)

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        """resid [n_layers, batch, pos, d_model] (stream entering each block) -> translated, same shape."""
        if resid.shape[0] != self.W.shape[0] or resid.shape[-1] != self.W.shape[-1]:
            raise InputError(
                f"TunedLens expects [n_layers={self.W.shape[0]}, batch, pos, d_model={self.W.shape[-1]}], got {tuple(resid.shape)}"
            )
        return resid + torch.einsum("lbpd,lde->lbpe", resid, self.W.to(resid.dtype)) + self.b[:, None, None].to(resid.dtype)


class _LensForward(nn.Module):
    """What the trainer trains: inputs -> the tuned lens's logits after every block, laid out along the
    position axis ([batch, n_layers * pos, d_vocab_out]) so each (layer, position) is one prediction.
    The model is kept outside the module tree, so the optimizer only sees the translators."""

    def __init__(self, model: nn.Module, lens: TunedLens):
        super().__init__()
        self.config = model.config  # the trainer reads config.arch
        self._model = [model]  # a list hides the frozen model from parameters() and .to()
        self.lens = lens

    def forward(self, tokens, src=None, *, attention_mask=None, src_attention_mask=None) -> torch.Tensor:
        model = self._model[0]
        kwargs = {"attention_mask": attention_mask}
        if src is not None:
            kwargs.update(src=src, src_attention_mask=src_attention_mask)
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names=resid_names(model), **kwargs)
            resid = torch.stack([cache[f"blocks.{l}.resid_pre"] for l in range(len(model.blocks))])  # [L, batch, pos, d_model]
        logits = unembed_resid(model, self.lens(resid))  # [L, batch, pos, d_vocab_out]
        L, B, P, V = logits.shape
        return logits.permute(1, 0, 2, 3).reshape(B, L * P, V)  # [batch, L * pos, d_vocab_out]


class LensDistillationTask:
    """Batches for training a tuned lens: the source's inputs, and for every (layer, position) a target
    drawn from the frozen model's final distribution at that position.

    ``source``: a task (anything with ``batch(batch_size, arch, generator) -> Batch``) or a tensor of
    token sequences [n_sequences, pos] to draw rows from.
    """

    name = "tuned-lens"

    def __init__(self, model: nn.Module, source):
        self.model, self.source = model, source
        self.n_layers = len(model.blocks)
        if isinstance(source, torch.Tensor):
            if source.dim() != 2 or source.dtype.is_floating_point:
                raise InputError(f"a tuned lens's token source must be integer ids [n_sequences, pos], got {source.dtype} {tuple(source.shape)}")
        elif not hasattr(source, "batch"):
            raise InputError("a tuned lens's source must be a task (with .batch) or a tensor of token ids")

    def spec(self) -> dict:
        return {"name": self.name, "options": {}}

    def batch(self, batch_size: int, arch: str = "decoder", generator: torch.Generator | None = None) -> Batch:
        if isinstance(self.source, torch.Tensor):
            rows = torch.randint(0, self.source.shape[0], (batch_size,), generator=generator)
            base = Batch(self.source[rows], self.source[rows], None)
        else:
            base = self.source.batch(batch_size, arch, generator=generator)
        device = next(self.model.parameters()).device
        kwargs = {"attention_mask": base.attention_mask}
        if base.src is not None:
            kwargs.update(src=base.src.to(device), src_attention_mask=base.src_attention_mask)
        with torch.no_grad():
            probs = self.model(base.inputs.to(device), **kwargs).float().softmax(-1).cpu()  # [batch, pos, vocab]
        B, P, V = probs.shape
        flat = probs[:, None].expand(B, self.n_layers, P, V).reshape(-1, V)  # one draw per (row, layer, pos)
        targets = torch.multinomial(flat, 1, generator=generator).view(B, self.n_layers * P)
        if base.attention_mask is not None:
            mask = base.attention_mask.bool()[:, None].expand(B, self.n_layers, P).reshape(B, -1)
        else:
            mask = torch.ones(B, self.n_layers * P, dtype=torch.bool)
        return Batch(base.inputs, targets, mask, src=base.src, attention_mask=base.attention_mask,
                     src_attention_mask=base.src_attention_mask)


def train_tuned_lens(
    model: nn.Module, source, *, steps: int = 300, batch_size: int = 16, lr: float = 1e-3, seed: int = 0, quiet: bool = True
) -> TunedLens:
    """Train a :class:`TunedLens` for ``model`` (frozen) with the project's Trainer on ``source``
    (a task or token sequences [n, pos]); ``lens.losses`` keeps the per-step loss (KL + H(p_final))."""
    from glassformer.train.trainer import TrainConfig, Trainer

    device = next(model.parameters()).device
    lens = TunedLens(model).to(device)
    task = LensDistillationTask(model, source)
    config = TrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(50, steps // 10), weight_decay=0.0,
        eval_every=0, eval_batches=1, seed=seed, device=str(device), quiet=quiet,
    )
    was_training = model.training
    model.eval()
    try:
        trainer = Trainer(_LensForward(model, lens), task, config, spec=task.spec())
        trainer.train()
    finally:
        model.train(was_training)
    lens.losses = list(trainer.losses)
    lens.eval()
    return lens


def tuned_lens(model: nn.Module, inputs: ModelInput, lens: TunedLens) -> LensResult:
    """The tuned lens's predictions after every block (see :func:`~glassformer.lens.logit_lens.logit_lens`)."""
    call_args(inputs)  # validates the inputs' form
    return logit_lens(model, inputs, tuned=lens)
