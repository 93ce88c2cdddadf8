"""Weight folding: rewrite a model's weights so the same function is easier to read. Never automatic.

**Folding norms.** A pre-norm block feeds ``Norm(x) = n(x) * w + b`` (n: the normalisation without
gain) into linear maps only, so gain and bias move into the weights that read it:

    Norm(x) W + c = n(x) (diag(w) W) + (b W + c)       =>   W' = w[:, None] * W,  c' = c + b W,  w' = 1, b' = 0

for ln1 -> W_Q, W_K, W_V;  ln2 -> W_in (and W_gate);  ln_cross -> the cross-attention's W_Q;  ln_final ->
W_U (or BERT's unembed transform W_T, whose own norm then goes into W_U; and the encoder classifier);
an encoder-decoder's encoder ln_final -> every cross-attention's W_K, W_V. (QK-norm and an embedding
norm write their outputs where no linear map follows directly, so they stay as they are.)

**Centring writing weights.** LayerNorm subtracts each vector's mean over d_model first, so the mean
of anything written into the residual stream is discarded by every reader. Removing it from the
writers (W_E, W_pos, W_O, b_O, W_out, b_out) changes nothing downstream:

    W_out' = W_out - mean_d(W_out)    (each row made mean-zero over d_model)

**Centring reading weights** (``center_reading_weights``, after ``fold_norms``, LayerNorm only). A folded
LayerNorm outputs n(x) = (x - mean(x)) / scale, which is mean-zero over d_model, so n(x) . c 1 = 0 for
any constant c: every weight that reads a LayerNorm can lose its mean over the input axis:

    W_Q' = W_Q - mean_d(W_Q)      (the same for W_K, W_V, W_in, W_gate, W_U, ... : whatever read a norm)

**Folding value biases** (``fold_value_biases``). Every attention row sums to one, so the value bias
passes straight through: z_h = sum_j pattern[j] (v_j + b_V[h]) = sum_j pattern[j] v_j + b_V[h], and

    b_O' = b_O + sum_h b_V[h] W_O[h],    b_V' = 0

(under grouped-query attention each query head uses its key/value head's b_V). Refused for linear
attention (its eps keeps the weights' sum just under one) and Linformer (its slots mix positions).

**Centring the unembedding.** softmax is invariant to adding a constant to every logit, so
``W_U' = W_U - mean_vocab(W_U)`` (and b_U) changes the logits but not the log-probabilities.

:func:`fold_weights` returns a folded *copy* (the original is untouched); its log-probabilities equal
the original's up to float rounding (tested). A model with tied embeddings is untied in the copy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.model.norms import LayerNorm, NoNorm, RMSNorm
from glassformer.model.transformer import Transformer


def fold_weights(
    model: Transformer, *, fold_norms: bool = True, center_writing_weights: bool = True, center_unembed: bool = False,
    fold_value_biases: bool = False, center_reading_weights: bool = False,
) -> Transformer:
    """A copy of ``model`` with norm gains/biases folded into the next weights, the residual writers
    centred, and, when asked, the value biases folded into b_O and the readers of LayerNorms centred (see
    the module docstring). Raises InputError where a fold would change the model: folding a post-norm
    model's norms (their outputs *are* the residual stream), centring writers unless every reader of the
    stream is a LayerNorm, centring readers of norms that were not folded or are not LayerNorms, folding
    value biases through attention whose weights do not sum to one."""
    cfg = model.config
    if center_reading_weights and not (fold_norms and cfg.norm == "layernorm" and cfg.norm_position == "pre"):
        raise InputError("center_reading_weights needs fold_norms=True on a pre-norm LayerNorm model: only a folded "
                         "LayerNorm's output is mean-zero over d_model")
    if fold_value_biases and cfg.attention in ("linear", "linformer"):
        raise InputError(f"fold_value_biases needs attention weights that sum to one; attention={cfg.attention!r}'s do not "
                         "(linear: an eps in the denominator; linformer: slots mix positions)")
    if fold_norms and cfg.norm != "none" and cfg.norm_position != "pre":
        raise InputError("fold_norms needs a pre-norm model: a post-norm model's norm outputs are the residual "
                         "stream itself, so their gains cannot move into the next weights")
    if center_writing_weights and not (cfg.norm == "layernorm" and cfg.norm_position == "pre" and cfg.final_norm):
        raise InputError("center_writing_weights needs pre-norm LayerNorm everywhere, final norm included: only "
                         "LayerNorm discards the mean of the residual stream (rmsnorm and 'none' do not)")
    folded = _untied_copy(model)
    with torch.no_grad():
        if fold_norms and cfg.norm != "none":
            _fold_all_norms(folded)
        if fold_value_biases:
            for stack in _stacks(folded):
                _fold_value_biases(stack)
        if center_reading_weights:
            _center_readers(folded)
        if center_writing_weights:
            for stack in _stacks(folded):
                _center_writers(stack)
        if center_unembed:
            W_U = folded.unembed.W_U
            W_U -= W_U.mean(-1, keepdim=True)  # [d_model, d_vocab_out]: each row mean-zero over the vocabulary
            if folded.unembed.b_U is not None:
                folded.unembed.b_U -= folded.unembed.b_U.mean()
    folded.folding = {"fold_norms": fold_norms, "center_writing_weights": center_writing_weights, "center_unembed": center_unembed,
                      "fold_value_biases": fold_value_biases, "center_reading_weights": center_reading_weights}
    return folded.eval()


def _untied_copy(model: Transformer) -> Transformer:
    """A deep copy; with tied embeddings, a copy whose W_U is its own parameter (= W_E^T)."""
    if not model.config.tie_embeddings:
        return copy.deepcopy(model)
    untied = Transformer(model.config.replace(tie_embeddings=False)).to(model.embed.W_E.device)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["unembed.W_U"] = model.unembed.weight.detach().clone()  # [d_model, d_vocab]
    untied.load_state_dict(state)
    return untied


def _stacks(model: Transformer) -> list[nn.Module]:
    return ([model.encoder] if model.encoder is not None else []) + [model]


def _fold_all_norms(model: Transformer) -> None:
    for stack in _stacks(model):
        for block in stack.blocks:
            _fold_into_attention(block.ln1, block.attn, ("Q", "K", "V"))
            if block.cross_attn is not None:
                _fold_into_attention(block.ln_cross, block.cross_attn, ("Q",))
            if block.mlp is not None:
                w, b = _take_gain(block.ln2)
                _fold_linear(block.mlp.W_in, block.mlp.b_in, w, b)  # W_in [d_model, d_mlp]
                if hasattr(block.mlp, "W_gate"):  # gated MLP (SwiGLU / GeGLU) reads ln2 twice
                    _fold_linear(block.mlp.W_gate, block.mlp.b_gate, w, b)
    if model.encoder is not None:  # the encoder's output is read by every cross-attention's keys and values
        w, b = _take_gain(model.encoder.ln_final)
        for block in model.blocks:
            for name in ("K", "V"):
                _fold_heads(getattr(block.cross_attn, f"W_{name}"), getattr(block.cross_attn, f"b_{name}"), w, b)
    w, b = _take_gain(model.ln_final)
    if model.classifier is not None:  # reads ln_final(resid)[:, 0] too
        _fold_linear(model.classifier.W, model.classifier.b, w, b)
    transform = getattr(model, "unembed_transform", None)
    if transform is not None:  # BERT's MLM head: ln_final -> W_T, and the transform's own norm -> W_U
        _fold_linear(transform.W_T, transform.b_T, w, b)  # W_T [d_model, d_model]
        w, b = _take_gain(transform.ln)
    _fold_linear(model.unembed.W_U, model.unembed.b_U, w, b)  # W_U [d_model, d_vocab_out]


def _take_gain(norm: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The norm's gain w and bias b (copies), after setting them to 1 and 0 in the norm. None for no norm."""
    if isinstance(norm, NoNorm):
        return None, None
    if not isinstance(norm, (LayerNorm, RMSNorm)):
        raise InputError(f"fold_weights does not know the norm {type(norm).__name__}")
    w = norm.w.detach().clone()
    b = norm.b.detach().clone() if getattr(norm, "b", None) is not None else None
    norm.w.fill_(1.0)
    if b is not None:
        norm.b.zero_()
    return w, b


def _fold_linear(W: torch.Tensor, bias: torch.Tensor | None, w, b) -> None:
    """W [d_model, n] reads Norm(x): W' = w[:, None] W, bias' = bias + b W (in place)."""
    if w is None:
        return
    if b is not None:
        if bias is None:
            raise InputError("cannot fold a norm bias into a weight without a bias (bias=False model with a norm bias)")
        bias += b @ W
    W *= w[:, None]


def _fold_heads(W: torch.Tensor, bias: torch.Tensor | None, w, b) -> None:
    """Per-head W [heads, d_model, d_head]: W'[h] = w[:, None] W[h], bias'[h] = bias[h] + b W[h] (in place)."""
    if w is None:
        return
    if b is not None:
        if bias is None:
            raise InputError("cannot fold a norm bias into a weight without a bias (bias=False model with a norm bias)")
        bias += torch.einsum("d,hde->he", b, W)
    W *= w[None, :, None]


def _fold_into_attention(norm: nn.Module, attn: nn.Module, which: tuple[str, ...]) -> None:
    w, b = _take_gain(norm)
    for name in which:
        _fold_heads(getattr(attn, f"W_{name}"), getattr(attn, f"b_{name}"), w, b)


def _center_writers(stack: nn.Module) -> None:
    """Make every vector written into this stack's residual stream mean-zero over d_model (in place)."""
    stack.embed.W_E -= stack.embed.W_E.mean(-1, keepdim=True)  # [d_vocab, d_model]
    if hasattr(stack.pos_embed, "W_pos"):  # learned positions; fixed sinusoids are left as they are
        stack.pos_embed.W_pos -= stack.pos_embed.W_pos.mean(-1, keepdim=True)
    for block in stack.blocks:
        for attn in (block.attn, block.cross_attn):
            if attn is None:
                continue
            attn.W_O -= attn.W_O.mean(-1, keepdim=True)  # [heads, d_head, d_model]
            if attn.b_O is not None:
                attn.b_O -= attn.b_O.mean()
        if block.mlp is not None:
            block.mlp.W_out -= block.mlp.W_out.mean(-1, keepdim=True)  # [d_mlp, d_model]
            if block.mlp.b_out is not None:
                block.mlp.b_out -= block.mlp.b_out.mean()


def _fold_value_biases(stack: nn.Module) -> None:
    """b_O += sum_h b_V[kv(h)] W_O[h]; b_V = 0 (in place), for every attention of the stack."""
    for block in stack.blocks:
        for attn in (block.attn, block.cross_attn):
            if attn is None or attn.b_V is None:
                continue
            b_V = attn.b_V.repeat_interleave(attn.n_heads // attn.n_kv_heads, dim=0)  # [kv_heads, d_head] -> [heads, d_head]
            attn.b_O += torch.einsum("he,hed->d", b_V, attn.W_O)
            attn.b_V.zero_()


def _center_readers(model: Transformer) -> None:
    """Make every weight that reads a (folded) LayerNorm mean-zero over its d_model input axis (in place)."""

    def center(W: torch.Tensor, axis: int) -> None:
        W -= W.mean(axis, keepdim=True)

    for stack in _stacks(model):
        for block in stack.blocks:
            if isinstance(block.ln1, LayerNorm):
                for W in (block.attn.W_Q, block.attn.W_K, block.attn.W_V):
                    center(W, 1)  # [heads, d_model, d_head]
            if block.cross_attn is not None and isinstance(block.ln_cross, LayerNorm):
                center(block.cross_attn.W_Q, 1)
            if block.mlp is not None and isinstance(block.ln2, LayerNorm):
                center(block.mlp.W_in, 0)  # [d_model, d_mlp]
                if hasattr(block.mlp, "W_gate"):
                    center(block.mlp.W_gate, 0)
    if model.encoder is not None and isinstance(model.encoder.ln_final, LayerNorm):
        for block in model.blocks:
            center(block.cross_attn.W_K, 1)
            center(block.cross_attn.W_V, 1)
    if not isinstance(model.ln_final, LayerNorm):
        return
    if model.classifier is not None:
        center(model.classifier.W, 0)  # [d_model, n_classes]
    transform = getattr(model, "unembed_transform", None)
    if transform is not None:
        center(transform.W_T, 0)  # [d_model, d_model]
        if isinstance(transform.ln, LayerNorm):
            center(model.unembed.W_U, 0)
    elif model.unembed is not None:
        center(model.unembed.W_U, 0)  # [d_model, d_vocab_out]
