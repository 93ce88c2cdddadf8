"""The peers of the speed benches, each built at one GPT shape, with the optimizer its own project sets up.

| side           | what                                                       | same function as glassformer?            | optimizer (as its project sets it up on a CPU) |
|----------------|------------------------------------------------------------|------------------------------------------|-------------------------------------------------|
| glassformer    | ``Transformer`` in nanoGPT's configuration (exact GELU)    | -                                        | ``glassformer.train.optim.make_optimizer``      |
| nanogpt        | nanoGPT's ``model.py``, written out in ``nanogpt_twin.py``  | yes: weights copied, logits checked      | nanoGPT ``configure_optimizers`` (fused on CUDA only) |
| hf_gpt2        | ``transformers.GPT2LMHeadModel`` (``activation="gelu"``)    | yes: ``to_hf_gpt2``, logits checked      | HF ``Trainer`` default: ``adamw_torch_fused``   |
| litgpt         | ``litgpt.model.GPT`` (LayerNorm, GptNeoxMLP, exact GELU)     | same shape and FLOPs; RoPE instead of learned positions (litgpt has no learned positions), tied by hand | litgpt ``pretrain``: AdamW, fused on CUDA only |
| x_transformers | ``TransformerWrapper(Decoder(attn_flash=True))``            | same shape and FLOPs; no bias in q/k/v/out, norms without bias | torch AdamW (x-transformers leaves it to the user) |

Every optimizer is AdamW with the same lr, betas, weight decay and gradient clipping (the step is in
``bench_train.py``); only the implementation a project picks differs (for-loop, or fused), and the
bench also reports a run where every side uses the same fused AdamW, to show how much of a lead is the
optimizer. litgpt and x-transformers are optional: a side whose package is missing is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.nanogpt_twin import nanogpt_config, nanogpt_from_glassformer, nanogpt_optimizer
from glassformer import Transformer
from glassformer.train.optim import make_optimizer


@dataclass(frozen=True)
class GPTShape:
    name: str
    n_layers: int
    n_heads: int
    d_model: int
    n_ctx: int
    batch: int
    d_vocab: int = 65

    @property
    def tokens_per_batch(self) -> int:
        return self.batch * self.n_ctx

    @property
    def matmul_params(self) -> int:
        """W_Q, W_K, W_V, W_O, W_in, W_out per layer, and W_U (tied): the N of 6N + 12 L d T."""
        return self.n_layers * 12 * self.d_model**2 + self.d_model * self.d_vocab

    @property
    def train_flops_per_token(self) -> float:
        return 6 * self.matmul_params + 12 * self.n_layers * self.d_model * self.n_ctx

    def describe(self) -> str:
        return f"{self.n_layers}L/{self.n_heads}H/{self.d_model}, T {self.n_ctx}, B {self.batch}"


@dataclass
class Side:
    """One model of a comparison: ``forward(tokens) -> logits`` [batch, pos, vocab], and its optimizer's maker."""

    name: str
    model: torch.nn.Module
    forward: object
    make_optimizer: object
    note: str = ""


def glassformer_side(shape: GPTShape, seed: int = 0) -> Side:
    torch.manual_seed(seed)
    model = Transformer(nanogpt_config(shape.n_layers, shape.d_model, shape.n_heads, shape.n_ctx, shape.d_vocab))
    return Side("glassformer", model, model, lambda lr: make_optimizer(model, lr, 0.1, betas=(0.9, 0.95)))


def nanogpt_side(gf: Transformer) -> Side:
    gpt = nanogpt_from_glassformer(gf)
    return Side("nanogpt", gpt, gpt, lambda lr: nanogpt_optimizer(gpt, lr))


def hf_side(gf: Transformer) -> Side | None:
    try:
        from glassformer.interop import to_hf_gpt2
    except ImportError:
        return None
    hf = to_hf_gpt2(gf).train()
    hf.set_attn_implementation("sdpa")
    fused = dict(fused=True)  # transformers' Trainer default (optim="adamw_torch_fused") with torch >= 2.8
    return Side("hf_gpt2", hf, lambda x: hf(input_ids=x).logits,
                lambda lr: torch.optim.AdamW(_decay_groups(hf), lr=lr, betas=(0.9, 0.95), **fused))


def litgpt_side(shape: GPTShape, seed: int = 0) -> Side | None:
    try:
        from litgpt.config import Config
        from litgpt.model import GPT
    except ImportError:
        return None
    torch.manual_seed(seed)
    config = Config(block_size=shape.n_ctx, vocab_size=shape.d_vocab, padded_vocab_size=shape.d_vocab, n_layer=shape.n_layers,
                    n_head=shape.n_heads, n_embd=shape.d_model, rotary_percentage=1.0, parallel_residual=False, bias=True,
                    norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP", intermediate_size=4 * shape.d_model,
                    gelu_approximate="none")
    model = GPT(config)
    model.lm_head.weight = model.transformer.wte.weight  # tied, as the others
    return Side("litgpt", model, model, lambda lr: torch.optim.AdamW(_decay_groups(model), lr=lr, betas=(0.9, 0.95)),
                note="RoPE (no learned positions)")


def x_transformers_side(shape: GPTShape, seed: int = 0) -> Side | None:
    try:
        from x_transformers import Decoder, TransformerWrapper
    except ImportError:
        return None
    torch.manual_seed(seed)
    model = TransformerWrapper(num_tokens=shape.d_vocab, max_seq_len=shape.n_ctx, tie_embedding=True,
                               attn_layers=Decoder(dim=shape.d_model, depth=shape.n_layers, heads=shape.n_heads,
                                                   attn_dim_head=shape.d_model // shape.n_heads, attn_flash=True))
    return Side("x_transformers", model, model, lambda lr: torch.optim.AdamW(_decay_groups(model), lr=lr, betas=(0.9, 0.95)),
                note="no q/k/v/out biases")


def _decay_groups(model: torch.nn.Module, weight_decay: float = 0.1) -> list[dict]:
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def all_sides(shape: GPTShape, seed: int = 0, only: set[str] | None = None) -> dict[str, Side]:
    """glassformer first, then every peer that is installed (``only``: a subset of names)."""
    gf = glassformer_side(shape, seed)
    sides = [gf, nanogpt_side(gf.model), hf_side(gf.model), litgpt_side(shape, seed), x_transformers_side(shape, seed)]
    return {s.name: s for s in sides if s is not None and (only is None or s.name in only)}


@torch.no_grad()
def max_logit_difference(a: Side, b: Side, tokens: torch.Tensor) -> float:
    """max |logits_a - logits_b| (eval mode) on ``tokens`` [batch, pos]."""
    was = a.model.training, b.model.training
    a.model.eval(), b.model.eval()
    diff = (a.forward(tokens) - b.forward(tokens)).abs().max().item()
    a.model.train(was[0]), b.model.train(was[1])
    return diff
