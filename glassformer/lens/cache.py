"""`ActivationCache`: what ``run_with_cache`` stored, read as the residual stream's story.

A pre-norm transformer's residual stream is a sum. Before block ``l`` (dropout off):

    resid_pre[l] = embed + pos_embed + sum_{l' < l} (attn_out[l'] + mlp_out[l'])
    attn_out[l]  = sum_h z[l, h] W_O[l, h] + b_O[l]           (each head's output is z_h W_O[h])

so the stream can be *accumulated* (its value after each layer, for the logit lens) or *decomposed*
(one term per embedding, head and MLP, for direct logit attribution). The final norm is not linear,
but with its per-position divisor ``scale`` fixed at the value the forward pass cached,

    ln_final(x) = (x - mean(x)) / scale * w + b        (LayerNorm; RMSNorm drops the centring and b)

is linear in x up to the constant b, so ``apply_ln_final`` can push every component through it and
the components still add up to the final residual.

Models are addressed by *stack*: ``None`` (the main stack: the decoder, or an encoder-only model's
encoder) or ``"encoder"`` (an encoder-decoder's encoder, hook names prefixed ``encoder.``).
"""

from __future__ import annotations

import difflib

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, Union

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.model.hook_aliases import resolve_alias
from glassformer.model.norms import LayerNorm, NoNorm, RMSNorm

ModelInput = Union[torch.Tensor, Mapping[str, Any]]  # tokens, or {"tokens": ..., "src": ..., "attention_mask": ...}


class ResidStack(NamedTuple):
    """A stack of residual-stream vectors and a label for each: ``values, labels = cache.decompose_resid()``."""

    values: torch.Tensor  # [components, batch, pos, d_model]
    labels: list[str]


# -- addressing the model ---------------------------------------------------------------------------


def call_args(inputs: ModelInput) -> tuple[tuple, dict]:
    """Split model inputs into ``(args, kwargs)`` for ``model(*args, **kwargs)``.

    A tensor is the tokens; a mapping holds ``tokens`` plus any keyword the model takes
    (``src``, ``attention_mask``, ``src_attention_mask``) -- an encoder-decoder needs ``src``.
    """
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, Mapping):
        if "tokens" not in inputs:
            raise InputError(f"model inputs given as a mapping need a 'tokens' entry, got keys {sorted(inputs)}")
        kwargs = {k: v for k, v in inputs.items() if k != "tokens"}
        return (inputs["tokens"],), kwargs
    raise InputError(f"model inputs must be a token tensor or a mapping with 'tokens', got {type(inputs).__name__}")


def tokens_of(inputs: ModelInput) -> torch.Tensor:
    """The (main stack's) token ids of model inputs, always [batch, pos]."""
    tokens = call_args(inputs)[0][0]
    if not isinstance(tokens, torch.Tensor):
        raise InputError(f"tokens must be a tensor of token ids, got {type(tokens).__name__}")
    return tokens[None] if tokens.dim() == 1 else tokens


def stack_prefix(model: nn.Module, stack: str | None = None) -> str:
    """The hook-name prefix of a stack: ``""`` for the main stack, ``"encoder."`` for an encoder-decoder's
    encoder. ``stack`` is None / "decoder" / "main" (main stack) or "encoder"."""
    if stack in (None, "", "main", "decoder"):
        if stack == "decoder" and model.config.arch == "encoder":
            raise InputError("stack='decoder' asked of an encoder-only model (its only stack is the encoder)")
        return ""
    if stack == "encoder":
        if model.config.arch == "encoder-decoder":
            return "encoder."
        if model.config.arch == "encoder":
            return ""
        raise InputError("stack='encoder' asked of a decoder-only model")
    raise InputError(f"stack must be None, 'decoder' or 'encoder', got {stack!r}")


def stack_module(model: nn.Module, prefix: str) -> nn.Module:
    """The module that owns ``embed``, ``blocks`` and ``ln_final`` for a hook-name prefix."""
    return model.encoder if prefix == "encoder." else model


def n_blocks(model: nn.Module, prefix: str = "") -> int:
    return len(stack_module(model, prefix).blocks)


def heads_per_block(model: nn.Module, prefix: str = "", kind: str = "attn", kv: bool = False) -> list[int]:
    """How many heads (``kv``: key/value heads) each block's ``kind`` attention has. Layers may differ
    (``ModelConfig.layer_n_heads``); a [layers, heads] table is as wide as the widest, NaN where a layer has no such head."""
    attns = [getattr(block, kind) for block in stack_module(model, prefix).blocks]
    return [a.n_kv_heads if kv else a.n_heads for a in attns]


def stack_heads(per_layer: list[torch.Tensor], dim: int) -> torch.Tensor:
    """Stack per-layer tensors whose head axis ``dim`` may differ in size, padding missing heads with NaN."""
    width = max(t.shape[dim] for t in per_layer)
    padded = []
    for t in per_layer:
        if t.shape[dim] < width:
            shape = list(t.shape)
            shape[dim] = width - t.shape[dim]
            t = torch.cat([t, t.new_full(shape, float("nan"))], dim)
        padded.append(t)
    return torch.stack(padded)


def run_with_cache(model: nn.Module, inputs: ModelInput, names=None, *, grads: bool = False, metric=None,
                   **forward_kwargs) -> tuple[torch.Tensor, ActivationCache]:
    """``model.run_with_cache`` on tensor-or-mapping inputs, returning an :class:`ActivationCache`.

    ``grads=True`` also stores each activation's gradient of ``metric(output)`` (or of the output itself, e.g.
    with ``return_type="loss"``) under ``name + "_grad"``: what attribution patching needs. Other keywords
    go to the forward (``return_type``, ``stop_at_layer``, ...)."""
    args, kwargs = call_args(inputs)
    if grads:
        out, activations = model.run_with_cache(*args, names=names, grads=True, metric=metric, **kwargs, **forward_kwargs)
    else:
        with torch.no_grad():
            out, activations = model.run_with_cache(*args, names=names, **kwargs, **forward_kwargs)
    return out, ActivationCache(activations, model)


# -- the cache ----------------------------------------------------------------------------------------


class MissingActivation(InputError, KeyError):
    """``cache[name]`` for a name the cache does not hold: an InputError with the closest names, and a KeyError
    (so ``name in cache`` and ``cache.get(name)`` behave as for any mapping)."""

    __str__ = Exception.__str__  # not KeyError's, which would quote the message


class ActivationCache(Mapping):
    """A read-only mapping hook name -> activation, plus the model, with residual-stream helpers."""

    def __init__(self, activations: Mapping[str, torch.Tensor], model: nn.Module, has_batch_dim: bool = True):
        self.activations = dict(activations)
        self.model = model
        self.has_batch_dim = has_batch_dim

    def __getitem__(self, name) -> torch.Tensor:
        """By glassformer's name, TransformerLens's (``blocks.0.attn.hook_pattern``) or its short key
        (``cache["pattern", 0]``); a gradient from ``grads=True`` as ``name + "_grad"``."""
        if isinstance(name, str) and name in self.activations:
            return self.activations[name]
        alias = resolve_alias(name)
        if isinstance(alias, str) and alias in self.activations:
            return self.activations[alias]
        close = difflib.get_close_matches(str(alias), list(self.activations), n=3, cutoff=0.6)
        hint = (f"; did you mean {' or '.join(map(repr, close))}?" if close else
                f": run run_with_cache without a names= filter, or include {name!r} in it")
        if str(alias).endswith(("result", "_input")):
            hint += " (optional hook points such as attn.result are cached only when named)"
        raise MissingActivation(f"the cache holds no activation {name!r}{hint}")

    def __contains__(self, name) -> bool:
        alias = resolve_alias(name)
        return name in self.activations or (isinstance(alias, str) and alias in self.activations)

    def __iter__(self) -> Iterator[str]:
        return iter(self.activations)

    def __len__(self) -> int:
        return len(self.activations)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} activations: {', '.join(list(self)[:4])}{', ...' if len(self) > 4 else ''})"

    # -- moving and reshaping -----------------------------------------------------------------------

    def to(self, *args, move_model: bool = False, **kwargs) -> ActivationCache:
        """A copy with every tensor moved/cast like ``Tensor.to(device or dtype)``; ``move_model=True``
        moves the model too (in place, as ``nn.Module.to`` does)."""
        if move_model:
            self.model.to(*args, **kwargs)
        moved = {name: t.to(*args, **kwargs) for name, t in self.activations.items()}
        return ActivationCache(moved, self.model, self.has_batch_dim)

    def remove_batch_dim(self) -> ActivationCache:
        """A copy of a batch-of-one cache with the batch dimension dropped from every activation
        (``pos_embed`` never had one). The residual-stream helpers need the batch dimension."""
        if not self.has_batch_dim:
            raise InputError("remove_batch_dim: this cache has no batch dimension left")
        batched = {name: t for name, t in self.activations.items() if not _unbatched(name)}
        sizes = {t.shape[0] for t in batched.values()}
        if sizes != {1}:
            raise InputError(f"remove_batch_dim needs a batch of one; this cache's batch is {sorted(sizes)}")
        return ActivationCache({name: t if _unbatched(name) else t[0] for name, t in self.activations.items()},
                               self.model, has_batch_dim=False)

    def _need_batch(self, what: str) -> None:
        if not self.has_batch_dim:
            raise InputError(f"{what} needs the batch dimension that remove_batch_dim() dropped: use the original cache")

    # -- the accumulated residual stream (logit lens) -----------------------------------------------

    def accumulated_resid(self, layer: int | None = None, *, stack: str | None = None, incl_mid: bool = False) -> ResidStack:
        """The residual stream before each block ``0 .. layer - 1`` and after the last one counted:

            values[i] = resid_pre[i]   (i < layer),   values[-1] = resid_pre[layer] or the final resid_post

        ``layer=None`` goes to the end of the stack. With ``incl_mid`` the stream between attention and
        MLP (``resid_mid``, and ``resid_mid_cross`` after cross-attention) is included too.
        Labels: ``0_pre``, ``0_mid``, ..., ``final``.  Shape [components, batch, pos, d_model].
        """
        p = stack_prefix(self.model, stack)
        n = n_blocks(self.model, p)
        layer = _check_layer(layer, n)
        values, labels = [], []
        for l in range(layer):
            values.append(self[f"{p}blocks.{l}.resid_pre"])
            labels.append(f"{l}_pre")
            if incl_mid:
                values.append(self[f"{p}blocks.{l}.resid_mid"])
                labels.append(f"{l}_mid")
                if f"{p}blocks.{l}.resid_mid_cross" in self.model.hook_names():
                    values.append(self[f"{p}blocks.{l}.resid_mid_cross"])
                    labels.append(f"{l}_mid_cross")
        if layer == n:
            values.append(self[f"{p}blocks.{n - 1}.resid_post"])
            labels.append("final")
        else:
            values.append(self[f"{p}blocks.{layer}.resid_pre"])
            labels.append(f"{layer}_pre")
        return ResidStack(torch.stack(values), labels)  # [components, batch, pos, d_model]

    # -- per-head outputs ---------------------------------------------------------------------------

    def head_results(self, layer: int, *, stack: str | None = None, cross: bool = False) -> torch.Tensor:
        """Each head's write into the residual stream, from the cached z (no extra hook needed):

            result[h] = z[:, :, h] @ W_O[h]        [heads, batch, pos, d_model]

        so that ``attn_out = result.sum(0) + b_O``. ``cross=True`` reads a decoder block's cross-attention.
        """
        p = stack_prefix(self.model, stack)
        block = stack_module(self.model, p).blocks[_check_block(layer, n_blocks(self.model, p))]
        attn = block.cross_attn if cross else block.attn
        if attn is None:
            raise InputError(f"block {layer} has no cross-attention (only an encoder-decoder's decoder blocks do)")
        z = self[f"{p}blocks.{layer}.{'cross_attn' if cross else 'attn'}.z"]  # [batch, pos, heads, d_head]
        return torch.einsum("bphe,hed->hbpd", z, attn.W_O.detach().to(z.dtype))  # [heads, batch, pos, d_model]

    def neuron_results(self, layer: int, *, stack: str | None = None, pos: int | None = None) -> torch.Tensor:
        """Each MLP neuron's write into the residual stream, from the cached ``mlp.post``:

            neuron_i = post[..., i] * W_out[i]          [d_mlp, batch, pos, d_model] ([d_mlp, batch, d_model] at ``pos``)

        so that ``mlp_out = neurons.sum(0) + b_out``. Memory grows as d_mlp x batch x pos x d_model: pass ``pos``."""
        self._need_batch("neuron_results")
        p = stack_prefix(self.model, stack)
        block = stack_module(self.model, p).blocks[_check_block(layer, n_blocks(self.model, p))]
        if block.mlp is None:
            raise InputError(f"block {layer} has no MLP (attention-only model)")
        post = self[f"{p}blocks.{layer}.mlp.post"]  # [batch, pos, d_mlp]
        if pos is not None:
            post = post[:, _check_pos(pos, post.shape[1])]  # [batch, d_mlp]
        W_out = block.mlp.W_out.detach().to(post.dtype)  # [d_mlp, d_model]
        return post.movedim(-1, 0)[..., None] * W_out.view(W_out.shape[0], *([1] * (post.dim() - 1)), -1)

    def stack_head_results(self, layer: int | None = None, *, stack: str | None = None) -> ResidStack:
        """Every head of blocks ``0 .. layer - 1`` (cross-attention heads too), labelled ``L0H3`` (``L0C3``
        for cross-attention).  [layers * heads, batch, pos, d_model]."""
        p = stack_prefix(self.model, stack)
        layer = _check_layer(layer, n_blocks(self.model, p))
        values, labels = [], []
        for l in range(layer):
            for cross in (False, True):
                if cross and stack_module(self.model, p).blocks[l].cross_attn is None:
                    continue
                results = self.head_results(l, stack=stack, cross=cross)
                values.append(results)
                labels += [f"L{l}{'C' if cross else 'H'}{h}" for h in range(results.shape[0])]
        if not values:
            raise InputError("stack_head_results: layer=0 leaves no heads to stack")
        return ResidStack(torch.cat(values), labels)

    # -- the decomposed residual stream (direct logit attribution) ----------------------------------

    def decompose_resid(
        self, layer: int | None = None, *, stack: str | None = None, heads: bool = False, neurons: bool = False,
        pos: int | None = None,
    ) -> ResidStack:
        """The residual stream before block ``layer`` (None: the final one) as a sum of its writers:

            resid = embed + pos_embed + sum_l (attn_out[l] + mlp_out[l])                  heads=False
                  = embed + pos_embed + sum_{l,h} z[l,h] W_O[l,h] + bias + sum_l mlp_out[l]   heads=True
            mlp_out[l] = sum_i post[l, i] W_out[l, i] + b_out[l]                           neurons=True

        where ``bias`` collects every b_O (and, with ``neurons``, every b_out). Only exact for pre-norm models
        (a post-norm model renormalises the stream after every sublayer) run without dropout.
        Labels: ``embed``, ``pos_embed`` (one ``embed_norm`` term for a model with an embedding norm),
        ``L0_attn`` or ``L0H0``..., ``L0_cross``, ``L0_mlp`` or ``L0N0``..., ``bias``.
        Shape [components, batch, pos, d_model]; [components, batch, d_model] at one ``pos`` (use it with
        ``neurons``: there are n_layers x d_mlp neuron terms).
        """
        self._need_batch("decompose_resid")
        p = stack_prefix(self.model, stack)
        if pos is not None:
            pos = _check_pos(pos, self[f"{p}blocks.0.resid_pre"].shape[1] if f"{p}blocks.0.resid_pre" in self else
                             self[f"{p}embed"].shape[1])
        at = (lambda t: t) if pos is None else (lambda t: t[:, pos])  # [batch, pos, d] -> [batch, d] at pos
        if self.model.config.norm_position != "pre" and self.model.config.norm != "none":
            raise InputError(
                "decompose_resid needs a pre-norm model: a post-norm model renormalises the residual stream "
                "after every sublayer, so the stream is not a sum of its components"
            )
        module = stack_module(self.model, p)
        layer = _check_layer(layer, len(module.blocks))
        if getattr(module, "ln_embed", None) is not None:  # BERT: resid_0 = Norm(embed + pos_embed), one term
            embed = at(self[f"{p}ln_embed"])  # [batch, pos, d_model]
            values, labels = [embed], ["embed_norm"]
        else:
            full = self[f"{p}embed"]  # [batch, pos, d_model]
            embed = at(full)
            values, labels = [embed], ["embed"]
            if module.pos_embed is not None:
                values.append(at(self[f"{p}pos_embed"].expand_as(full)))  # [pos, d_model] -> [batch, pos, d_model]
                labels.append("pos_embed")
        bias = torch.zeros_like(embed)
        any_bias = False
        for l in range(layer):
            block = module.blocks[l]
            for cross, name in ((False, "attn"), (True, "cross")):
                attn = block.cross_attn if cross else block.attn
                if attn is None:
                    continue
                if heads:
                    results = self.head_results(l, stack=stack, cross=cross)  # [heads, batch, pos, d_model]
                    values += [at(r) for r in results]
                    labels += [f"L{l}{'C' if cross else 'H'}{h}" for h in range(results.shape[0])]
                    if attn.b_O is not None:
                        bias, any_bias = bias + attn.b_O.detach(), True
                else:
                    values.append(at(self[f"{p}blocks.{l}.{'cross_attn_out' if cross else 'attn_out'}"]))
                    labels.append(f"L{l}_{name}")
            if block.mlp is None:
                continue
            if neurons:
                results = self.neuron_results(l, stack=stack, pos=pos)  # [d_mlp, batch, (pos,) d_model]
                values += list(results)
                labels += [f"L{l}N{i}" for i in range(results.shape[0])]
                if block.mlp.b_out is not None:
                    bias, any_bias = bias + block.mlp.b_out.detach(), True
            else:
                values.append(at(self[f"{p}blocks.{l}.mlp_out"]))
                labels.append(f"L{l}_mlp")
        if any_bias:
            values.append(bias)
            labels.append("bias")
        return ResidStack(torch.stack(values), labels)  # [components, batch, (pos,) d_model]

    # -- the final norm, applied linearly -----------------------------------------------------------

    def apply_ln_final(
        self, residual_stack: torch.Tensor, *, stack: str | None = None, pos: int | slice | None = None, recompute: bool = False
    ) -> torch.Tensor:
        """Push a stack of residual vectors through the final norm *without its bias*:

            LayerNorm:  (x - mean(x)) / scale * w          RMSNorm:  x / scale * w          none: x

        ``scale`` is the cached ``ln_final.scale`` of the real forward pass ([batch, pos, 1]), so the map
        is linear and the results of a decomposition still sum to ``ln_final(resid) - b``. If the stack
        was already indexed at one position (``[..., batch, d_model]``), pass that ``pos`` so the scale
        is indexed the same way. ``recompute=True`` instead normalises every vector by its own scale
        (what the logit lens does to each layer's stream; not linear).
        ``residual_stack``: [..., batch, pos, d_model] (or [..., batch, d_model] with ``pos``).
        """
        return self.apply_ln(residual_stack, None, stack=stack, pos=pos, recompute=recompute)

    def apply_ln(
        self, residual_stack: torch.Tensor, layer: int | None, norm: str = "ln1", *, stack: str | None = None,
        pos: int | slice | None = None, recompute: bool = False,
    ) -> torch.Tensor:
        """Push a stack of residual vectors through block ``layer``'s norm ``norm`` (``"ln1"`` before
        attention, ``"ln2"`` before the MLP, ``"ln_cross"``; ``layer=None``: the final norm) without its
        bias, with that norm's *cached* scale, as :meth:`apply_ln_final` does for the final norm (same
        ``pos`` and ``recompute``). So ``apply_ln(decompose_resid(l), l, "ln1").sum(0) + b`` is exactly what
        block l's attention reads."""
        self._need_batch("apply_ln")
        p = stack_prefix(self.model, stack)
        module = stack_module(self.model, p)
        if layer is None:
            norm_module, name = module.ln_final, f"{p}ln_final"
        else:
            block = module.blocks[_check_block(layer, len(module.blocks))]
            if norm not in ("ln1", "ln2", "ln_cross") or getattr(block, norm, None) is None:
                raise InputError(f"block {layer} has no norm {norm!r} (ln1; ln2 unless attention-only; ln_cross in a decoder "
                                 "with cross-attention)")
            norm_module, name = getattr(block, norm), f"{p}blocks.{layer}.{norm}"
        if isinstance(norm_module, NoNorm):
            return residual_stack
        if not isinstance(norm_module, (LayerNorm, RMSNorm)):
            raise InputError(f"apply_ln does not know the norm {type(norm_module).__name__}")
        x = residual_stack
        if isinstance(norm_module, LayerNorm):
            x = x - x.mean(-1, keepdim=True)  # centre each vector over d_model
        if recompute:
            scale = (x.pow(2).mean(-1, keepdim=True) + norm_module.eps).sqrt()  # [..., 1] each vector's own
        else:
            scale = self[f"{name}.scale"]  # [batch, pos, 1]
            if pos is not None:
                scale = scale[:, pos]  # [batch, 1] (or [batch, n, 1] for a slice)
        return x / scale * norm_module.w.detach()

    def final_norm_bias(self, *, stack: str | None = None) -> torch.Tensor | None:
        """The final norm's bias ``b`` [d_model] (the constant ``apply_ln_final`` leaves out), or None."""
        norm = stack_module(self.model, stack_prefix(self.model, stack)).ln_final
        b = getattr(norm, "b", None)
        return b.detach() if b is not None else None


def _check_layer(layer: int | None, n: int) -> int:
    """``layer`` as a count of blocks 0..n (None = n); negative counts from the end like Python."""
    if layer is None:
        return n
    if not isinstance(layer, int) or not -n <= layer <= n:
        raise InputError(f"layer must be an int in [{-n}, {n}] for a stack of {n} blocks, got {layer!r}")
    return layer if layer >= 0 else n + layer


def _check_pos(pos: int, n_pos: int) -> int:
    if isinstance(pos, bool) or not isinstance(pos, int) or not -n_pos <= pos < n_pos:
        raise InputError(f"pos must be an int in [{-n_pos}, {n_pos}), got {pos!r}")
    return pos


def _unbatched(name: str) -> bool:
    """Activations stored without a batch dimension: the (learned or sinusoidal) position embeddings."""
    return name.removesuffix("_grad").endswith("pos_embed")


def _check_block(layer: int, n: int) -> int:
    if not isinstance(layer, int) or not 0 <= layer < n:
        raise InputError(f"block index must be an int in [0, {n}), got {layer!r}")
    return layer
