"""One interaction of the page = one forward pass (with the chosen interventions attached) whose cache
feeds every view: predictions, attention patterns, head detectors, the logit lens and direct logit
attribution. All the maths is the library's (``glassformer.lens``); this module only picks and packs.

    next-token distribution    p_i = softmax(logits_i)                       [pos, d_vocab_out]
    attention                  pattern[l, h] = softmax(q k^T / sqrt(d_head))  [heads, q_pos, k_pos] of layer l
    head detectors             score = mean_q sum_{k in R(q)} pattern[q, k]  [layers, heads] per detector
    logit lens                 softmax(Norm_final(resid_l) W_U + b_U)         [layers + 1, pos]
    direct logit attribution   logit_t = sum_c Norm_final^lin(c) . W_U[:, t] (+ bias)   one value per component c

Interventions (on the main stack): a head's ``z`` or an MLP's ``mlp_out`` is set to zero, to its mean over
reference inputs (16 random sequences of the same length, seeded), or patched from a second input's run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from glassformer.errors import InputError
from glassformer.lens.attribution import direct_logit_attribution
from glassformer.lens.cache import ActivationCache, stack_heads
from glassformer.lens.detectors import DETECTORS, pattern_score, reference_for
from glassformer.lens.interventions import ablation_hooks
from glassformer.lens.logit_lens import unembed_resid

MODES = ("zero", "mean", "patch")
VIEWS = ("attention", "detectors", "lens", "dla")  # what a run can add to the predictions (the page asks for its tab's)
MEAN_REFERENCE = 16  # sequences averaged for a mean ablation
DLA_SHOWN = 16  # components listed by direct logit attribution (the largest |value|; the rest summed)


@dataclass
class Intervention:
    """Ablate or patch one component of the main stack: ``kind`` "head" (with ``head``) or "mlp"."""

    kind: str
    layer: int
    head: int | None = None
    mode: str = "zero"

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.attn.z" if self.kind == "head" else f"blocks.{self.layer}.mlp_out"

    def label(self) -> str:
        return (f"L{self.layer}H{self.head}" if self.kind == "head" else f"L{self.layer} MLP") + f" ({self.mode})"


@dataclass
class RunRequest:
    tokens: list[int]
    src: list[int] | None = None
    layer: int = 0  # whose attention patterns to send (one layer at a time: a 12 x 12 model stays readable)
    top_k: int = 5
    interventions: list[Intervention] = field(default_factory=list)
    patch_tokens: list[int] | None = None  # the second input patched from
    dla_token: int | None = None  # None: the top prediction at dla_pos
    dla_pos: int = -1
    dla_per_head: bool = True
    views: tuple[str, ...] = VIEWS


def model_inputs(tokens: list[int], src: list[int] | None):
    t = torch.tensor([tokens], dtype=torch.long)  # [1, pos]
    return {"tokens": t, "src": torch.tensor([src], dtype=torch.long)} if src is not None else t


def forward(subject, tokens, src=None, interventions=(), patch_tokens=None, names=None) -> tuple[torch.Tensor, ActivationCache]:
    """``(logits [1, pos, d_vocab_out], cache)`` of one pass with ``interventions`` attached; ``names`` limits
    the cache to those hook points (None: all of them)."""
    model = subject.model
    hooks = intervention_hooks(subject, tokens, src, list(interventions), patch_tokens)
    inputs = model_inputs(tokens, src)
    kwargs = {"src": inputs["src"]} if isinstance(inputs, dict) else {}
    tok = inputs["tokens"] if isinstance(inputs, dict) else inputs
    with torch.no_grad(), model.hooks(hooks):
        logits, activations = model.run_with_cache(tok, names=names, **kwargs)
    return logits, ActivationCache(activations, model)


def plain_logits(subject, tokens, src=None) -> torch.Tensor:
    """The logits [1, pos, d_vocab_out] of an unhooked pass (the fused attention path: no cache needed)."""
    inputs = model_inputs(tokens, src)
    with torch.no_grad():
        if isinstance(inputs, dict):
            return subject.model(inputs["tokens"], src=inputs["src"])
        return subject.model(inputs)


def intervention_hooks(subject, tokens, src, interventions: list[Intervention], patch_tokens) -> list:
    model = subject.model
    n_layers = len(model.blocks)
    for iv in interventions:
        if not 0 <= iv.layer < n_layers:
            raise InputError(f"layer {iv.layer} does not exist: the model has layers 0..{n_layers - 1}")
        n_heads = model.blocks[iv.layer].attn.n_heads  # layers may differ (ModelConfig.layer_n_heads)
        if iv.kind == "head" and not (iv.head is not None and 0 <= iv.head < n_heads):
            raise InputError(f"head {iv.head} does not exist: layer {iv.layer} has heads 0..{n_heads - 1}")
        if iv.kind == "mlp" and model.blocks[iv.layer].mlp is None:
            raise InputError(f"layer {iv.layer} has no MLP (an attention-only model)")
        if iv.mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {iv.mode!r}")
    hooks = []
    for mode in ("zero", "mean"):
        chosen = [iv for iv in interventions if iv.mode == mode]
        if not chosen:
            continue
        reference = _mean_reference(subject, tokens, src) if mode == "mean" else None
        hooks += ablation_hooks(
            model, heads=[(iv.layer, iv.head) for iv in chosen if iv.kind == "head"],
            mlps=[iv.layer for iv in chosen if iv.kind == "mlp"], mode=mode, reference=reference,
        )
    patched = [iv for iv in interventions if iv.mode == "patch"]
    if patched:
        if not patch_tokens:
            raise InputError("patching needs a second input to patch from")
        if len(patch_tokens) != len(tokens):
            raise InputError(f"the patch input has {len(patch_tokens)} tokens but the input has {len(tokens)}: "
                             "patching copies activations position by position, so they must be the same length")
        _, source = forward(subject, patch_tokens, src, names=sorted({iv.hook_name for iv in patched}))
        hooks += [(iv.hook_name, _patch_hook(source[iv.hook_name], iv)) for iv in patched]
    return hooks


def _patch_hook(source: torch.Tensor, iv: Intervention):
    def hook(act: torch.Tensor, _point) -> torch.Tensor:
        act = act.clone()
        if iv.kind == "head":
            act[:, :, iv.head] = source[:, :, iv.head]  # z: [batch, pos, heads, d_head]
        else:
            act[:] = source  # mlp_out: [batch, pos, d_model]
        return act

    return hook


def _mean_reference(subject, tokens, src):
    """16 random sequences of the input's length (the first token kept: a compiled program's BOS)."""
    g = torch.Generator().manual_seed(0)
    low = 2 if subject.compiled is not None else 0  # a compiled model's ids 0 and 1 are BOS and PAD
    ref = torch.randint(low, subject.model.config.d_vocab, (MEAN_REFERENCE, len(tokens)), generator=g)  # [16, pos]
    ref[:, 0] = tokens[0]
    if src is not None:
        return {"tokens": ref, "src": torch.tensor([src]).expand(MEAN_REFERENCE, -1)}
    return ref


# -- the views ------------------------------------------------------------------------------------------


def top_tokens(subject, probs: torch.Tensor, k: int) -> list[list[dict]]:
    """The ``k`` most likely outputs at each position of probs [pos, d_vocab_out]."""
    p, ids = probs.topk(min(k, probs.shape[-1]), dim=-1)  # [pos, k]
    return [[{"id": int(i), "text": subject.out_labels[int(i)], "p": round(float(q), 4)} for q, i in zip(pr, ir)]
            for pr, ir in zip(p, ids)]


def run(subject, req: RunRequest) -> dict:
    """Everything the page shows for one input: see the module docstring."""
    model = subject.model
    n_layers = len(model.blocks)
    if not 0 <= req.layer < n_layers:
        raise InputError(f"layer {req.layer} does not exist: the model has layers 0..{n_layers - 1}")
    logits, cache = forward(subject, req.tokens, req.src, req.interventions, req.patch_tokens)
    probs = logits[0].float().softmax(-1)  # [pos, d_vocab_out]
    unknown = set(req.views) - set(VIEWS)
    if unknown:
        raise InputError(f"unknown view(s) {sorted(unknown)}; views: {', '.join(VIEWS)}")
    out = {
        "tokens": [{"id": t, "text": subject.token_text(t)} for t in req.tokens],
        "predictions": top_tokens(subject, probs, req.top_k),
        "output": _program_output(subject, logits[0]),
        "interventions": [iv.label() for iv in req.interventions],
    }
    if "attention" in req.views:
        out["attention"] = {"layer": req.layer, "heads": _rounded(cache[f"blocks.{req.layer}.attn.pattern"][0], 3)}  # 0.1% steps
    if "detectors" in req.views:
        out["detectors"] = detector_scores(cache, req.tokens, n_layers)
    if "lens" in req.views:  # [layers + 1, pos, d_vocab_out] logits: the costly view for a large vocabulary
        out["lens"] = lens_view(subject, cache)
    if "dla" in req.views:
        out["dla"] = dla_view(subject, cache, probs, req)
    if req.src is not None:
        out["src_tokens"] = [{"id": t, "text": subject.token_text(t)} for t in req.src]
    if req.interventions:
        base_logits = plain_logits(subject, req.tokens, req.src)
        base = base_logits[0].float().softmax(-1)  # [pos, d_vocab_out]
        top = base.argmax(-1)  # [pos]
        out["baseline"] = {
            "predictions": top_tokens(subject, base, req.top_k),
            "output": _program_output(subject, base_logits[0]),
            "changed": (probs.argmax(-1) != top).tolist(),
            "delta": [round(float(probs[i, t] - base[i, t]), 4) for i, t in enumerate(top.tolist())],  # p(old top) after - before
        }
    return out


def detector_scores(cache: ActivationCache, tokens: list[int], n_layers: int) -> dict[str, list]:
    """Each head detector's score on this input: {detector: [layers][heads]} (None where undefined, or where a
    layer has fewer heads than the widest)."""
    patterns = stack_heads([cache[f"blocks.{l}.attn.pattern"][0] for l in range(n_layers)], dim=0)  # [layers, heads, q, k]
    ids = torch.tensor([tokens])  # [1, pos]
    scores = {}
    for name in DETECTORS:
        s = pattern_score(patterns, reference_for(name, ids)[0])  # [layers, heads]
        scores[name] = [[None if v != v else round(float(v), 3) for v in row] for row in s]  # NaN -> None
    return scores


def lens_view(subject, cache: ActivationCache) -> dict:
    """The logit lens: the top prediction after each block at each position, and the probability each
    layer gives the final top prediction. Layers are rows, positions columns."""
    resid, labels = cache.accumulated_resid()  # [layers + 1, 1, pos, d_model]
    with torch.no_grad():
        probs = unembed_resid(subject.model, resid[:, 0]).float().softmax(-1)  # [layers + 1, pos, d_vocab_out]
    p_top, top = probs.max(-1)  # [layers + 1, pos]
    final_top = top[-1]  # [pos]
    p_final = probs.gather(-1, final_top[None, :, None].expand(probs.shape[0], -1, 1))[..., 0]  # [layers + 1, pos]
    return {
        "labels": labels,
        "top": [[{"id": int(i), "text": subject.out_labels[int(i)], "p": round(float(q), 4)} for q, i in zip(pr, ir)]
                for pr, ir in zip(p_top, top)],
        "p_final": _rounded(p_final, 4),
    }


def dla_view(subject, cache: ActivationCache, probs: torch.Tensor, req: RunRequest) -> dict:
    """Direct logit attribution of one output token at one position, over embeddings, heads and MLPs."""
    n = probs.shape[0]
    pos = req.dla_pos
    if not -n <= pos < n:
        raise InputError(f"attribution position {pos} is outside the input (0..{n - 1})")
    pos = pos % n
    token = int(probs[pos].argmax()) if req.dla_token is None else req.dla_token
    if not 0 <= token < probs.shape[-1]:
        raise InputError(f"attribution token {token} is out of range 0..{probs.shape[-1] - 1}")
    view = {"pos": pos, "token": {"id": token, "text": subject.out_labels[token]}}
    try:
        attribution = direct_logit_attribution(subject.model, cache, token, pos=pos, heads=req.dla_per_head)
    except InputError as e:  # e.g. a Post-LN model: its stream is not a sum of components
        return {**view, "error": str(e)}
    values = attribution.values[:, 0]  # [components]
    order = values.abs().argsort(descending=True).tolist()
    shown = sorted(order[:DLA_SHOWN])
    rest = sorted(order[DLA_SHOWN:])
    items = [{"label": attribution.labels[i], "value": round(float(values[i]), 4)} for i in shown]
    if rest:
        items.append({"label": f"{len(rest)} others", "value": round(float(values[rest].sum()), 4)})
    return {**view, "items": items, "total": round(float(attribution.total[0]), 4)}


def _program_output(subject, logits: torch.Tensor):
    """A compiled program's output at positions 1.. (after BOS), decoded as ``CompiledModel.run`` does."""
    if subject.compiled is None:
        return None
    values = subject.compiled.decode(logits[1:].float().cpu())
    return [None if v is None else (v if isinstance(v, (int, float, bool)) else str(v)) for v in values]


def _rounded(t: torch.Tensor, digits: int) -> list:
    return torch.round(t.double(), decimals=digits).tolist()  # float64: 0.012, not float32's 0.012000000104308128
