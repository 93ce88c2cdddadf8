"""Compiled-then-trained models: compiled weights made dense, trained further, kept only if they still
compute the program the compiled way (interchange-intervention accuracy, IIA >= 0.99).

1. **Rotate**: a random orthogonal Q [d_model, d_model] folded into every weight that touches the
   residual stream (the function is unchanged, every weight becomes dense):

       W_E, W_pos, W_O[h], b_O, W_out, b_out  <-  (.) Q          W_Q[h], W_K[h], W_V[h], W_in, W_U  <-  Q^T (.)

2. **Noise** (before the rotation): every exact zero of a weight becomes N(0, (noise * m)^2), m the
   median magnitude of its nonzero entries,
   so the empty head slots and unused units are no longer zero (the compiled entries keep their values).
3. **Train** per position (cross-entropy on real positions, inputs of every length, padded) on the
   labels the compiled model gives, which equal the program's (``rasp.compile`` checks it).
4. **IIA** (Geiger et al. 2021; InterpBench, Gupta et al. 2024): for a base and a source input of one
   length and one program value v (the s-op a head or MLP writes), replace v's subspace of the residual
   stream after its writer, in the base run, by the source run's -- in the trained model through the
   rotation (x + ((x_src - x) Q^T 1_v) Q), in the compiled model in its own dimensions. The compiled
   model's answer under the intervention is the program's (each value lives in its own dimensions);
   IIA is the share of (base, source, value) whose decoded outputs agree everywhere.

The correspondence comes from the compiler: ``compiled.residual_labels`` names each dimension's value
and ``compiled.blocks`` the layer that writes it. The ground truth of the trained model is the compiled
model's (a rotation does not change which head is which).
"""

from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from glassformer.circuits.inputs import decode_ids, sample_tokens

# Programs whose compiled-then-trained models keep IIA >= 0.99 at the defaults below (seed 0), then two that
# do not: the 1/(w+1) a SelectorWidth head writes is decoded by an MLP with gaps of ~1/(N+1)^2, which
# training bends (histogram 0.95, reverse 0.94; sort, double_histogram, most_frequent fall to 0.4-0.8).
TRAINED_PROGRAMS = [("shift_by", "abc", 5), ("running_max", "abcd", 4), ("detect_pattern", "abc", 5),
                    ("shift_by", "abcd", 6), ("running_max", "abcde", 6), ("detect_pattern", "abc", 6),
                    ("histogram", "abcd", 4), ("reverse", "abcd", 4)]


def random_rotation(d: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """A random orthogonal matrix [d, d] (QR of a Gaussian, signs fixed so it is Haar-distributed)."""
    a = torch.randn(d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return (q * torch.sign(torch.diagonal(r))).to(dtype)


@torch.no_grad()
def rotate(model, Q: torch.Tensor) -> None:
    """Fold the rotation x -> x Q of the residual stream into ``model``'s weights, in place."""
    Q = Q.to(model.embed.W_E.dtype)
    model.embed.W_E.copy_(model.embed.W_E @ Q)
    model.pos_embed.W_pos.copy_(model.pos_embed.W_pos @ Q)
    for block in model.blocks:
        a, m = block.attn, block.mlp
        for W in (a.W_Q, a.W_K, a.W_V):  # [heads, d_model, d_head]
            W.copy_(torch.einsum("dk,hde->hke", Q, W))
        a.W_O.copy_(a.W_O @ Q)  # [heads, d_head, d_model]
        a.b_O.copy_(a.b_O @ Q)
        m.W_in.copy_(Q.T @ m.W_in)
        m.W_out.copy_(m.W_out @ Q)
        m.b_out.copy_(m.b_out @ Q)
    model.unembed.W_U.copy_(Q.T @ model.unembed.W_U)


@torch.no_grad()
def add_noise(model, scale: float, generator: torch.Generator) -> None:
    """Fill the exact zeros of every weight (empty head slots, unused units, unread dimensions) with
    N(0, (scale * m)^2), m the median magnitude of the weight's nonzero entries; the compiled entries keep
    their values."""
    for p in model.parameters():
        nonzero = p[p != 0].abs()
        m = nonzero.median() if nonzero.numel() else torch.tensor(1.0, dtype=p.dtype)
        p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale * m * (p == 0))


def variables(compiled) -> dict[str, tuple[str, list[int]]]:
    """Each value a head or MLP writes: label -> (the hook after its writer, its residual dimensions)."""
    dims = defaultdict(list)
    for i, label in enumerate(compiled.residual_labels):
        dims[label.split("=")[0]].append(i)
    out = {}
    for b in compiled.blocks:
        if "erase" in b.detail:
            continue
        for label in (b.node, f"1/({b.node}+1)"):  # a SelectorWidth head writes 1/(w+1), its MLP decodes w
            if label in dims and label not in out:
                hook = f"blocks.{b.layer}.resid_mid" if b.kind == "attention" else f"blocks.{b.layer}.resid_post"
                out[label] = (hook, dims[label])
    return out


@torch.no_grad()
def iia(compiled, trained_model, Q: torch.Tensor, n_pairs: int = 64, seed: int = 0) -> float:
    """Interchange-intervention accuracy of ``trained_model`` against ``compiled`` (module docstring)."""
    rng = np.random.default_rng(seed)
    tokens, mask = sample_tokens(compiled, 4 * n_pairs, rng)
    lengths = mask.sum(1)
    base, source = [], []
    for i in rng.permutation(len(tokens))[:n_pairs].tolist():
        same = (lengths == lengths[i]).nonzero()[:, 0]
        base.append(i)
        source.append(int(same[rng.integers(len(same))]))
    base_t, src_t, m = tokens[base], tokens[source], mask[base]
    real = m[:, 1:].bool()
    agree, total = 0, 0
    for hook, dims in variables(compiled).values():
        outs = []
        for model, R in ((compiled.model, None), (trained_model, Q)):
            _, cache = model.run_with_cache(src_t, attention_mask=m, names=[hook])
            src = cache[hook]  # [batch, pos, d_model]
            sel = torch.zeros(src.shape[-1], dtype=src.dtype)
            sel[dims] = 1.0

            def swap(x, hook_point, src=src, sel=sel, R=R):
                if R is None:
                    return x + (src - x) * sel
                R_ = R.to(x.dtype)
                return x + (((src - x) @ R_.T) * sel) @ R_

            with model.hooks({hook: swap}):
                outs.append(decode_ids(compiled, model(base_t, attention_mask=m)[:, 1:].float()))
        same = ((outs[0] == outs[1]) | ~real).all(1)
        agree += int(same.sum())
        total += len(same)
    return agree / total if total else 1.0


def compile_then_train(compiled, *, seed: int = 0, noise: float = 0.001, steps: int = 300, lr: float = 1e-4,
                       batch: int = 64, optimizer: str = "adam"):
    """(a CompiledModel holding the rotated, noised, retrained model, info) -- see the module docstring."""
    g = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(compiled.model).float()
    d = model.config.d_model
    Q = random_rotation(d, g, torch.float32)
    add_noise(model, noise, g)
    rotate(model, Q)
    model.requires_grad_(True).train()
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        tokens, mask = sample_tokens(compiled, batch, rng)
        with torch.no_grad():
            target = compiled.model(tokens, attention_mask=mask).argmax(-1)  # [batch, pos]
        logits = model(tokens, attention_mask=mask)  # [batch, pos, classes]
        real = mask.bool().clone()
        real[:, 0] = False
        loss = F.cross_entropy(logits[real], target[real])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().requires_grad_(False)
    tokens, mask = sample_tokens(compiled, 512, np.random.default_rng(seed + 1))
    with torch.no_grad():
        want = decode_ids(compiled, compiled.model(tokens, attention_mask=mask)[:, 1:].float())
        got = decode_ids(compiled, model(tokens, attention_mask=mask)[:, 1:].float())
    real = mask[:, 1:].bool()
    accuracy = float(((want == got) | ~real).all(1).float().mean())
    trained = copy.copy(compiled)
    trained.model = model
    info = {"iia": round(iia(compiled, model, Q, seed=seed), 4), "accuracy": round(accuracy, 4),
            "final_loss": round(float(loss.detach()), 5), "noise": noise, "steps": steps}
    return trained, info
