"""The forward pass of all three architectures in NumPy, one short function per equation (float64).

This is the whole model, written so that each function is one line of the guide (``docs/guide.md``):

    resid_0    = W_E[t] + W_pos[p]                                   embed, positions
    q_h        = x W_Q[h] + b_Q[h]        k_h, v_h likewise          project
    scores_h   = scale * q_h k_h^T  (+ ALiBi bias), masked to -inf   attention_scores, mask
    pattern_h  = softmax(scores_h)                                   softmax (over keys)
    z_h        = pattern_h v_h                                       attend
    attn_out   = sum_h z_h W_O[h] + b_O                              combine_heads
    mlp_out    = act(x W_in + b_in) W_out + b_out                    mlp
    Pre-LN:  x + Sublayer(Norm(x))       Post-LN:  Norm(x + Sublayer(x))
    Parallel (GPT-J, GPT-NeoX):  x + Attn(Norm1(x)) + MLP(Norm2(x))
    Gemma 2 / 3: sandwich norms x + Norm_post(Sublayer(Norm(x))), soft_cap c tanh(s / c) on scores and logits,
                 every k-th layer global among sliding-window ones (each block reads its ``layer_config``)
    logits     = Norm_final(resid_L) W_U + b_U                       unembed

and every variant the model offers (``reference_variants``: T5 bias, sliding / sparse / linear / Linformer
attention, image patches; Transformer-XL memory as keys [SG(mem) ; h] carried from segment to segment).

:func:`forward` runs it on a parameter dictionary (``params_of(model)``: the model's ``state_dict`` as
float64 arrays) and can record every intermediate under the same name as the model's hook point, so a
test compares the two hook by hook. Nothing here imports torch except :func:`params_of`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from glassformer.errors import InputError
from glassformer.explain import reference_variants as rv
from glassformer.model.config import ModelConfig

Params = dict[str, np.ndarray]
Record = Callable[[str, np.ndarray], None]


def params_of(model) -> Params:
    """The model's parameters as float64 NumPy arrays, keyed by their names (``blocks.0.attn.W_Q``)."""
    return {name: t.detach().cpu().double().numpy() for name, t in model.state_dict().items()}


# -- embeddings -------------------------------------------------------------------------------------------


def embed(W_E: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """embed = W_E[tokens]: row t of W_E is token t's vector.  [batch, pos, d_model]"""
    return W_E[tokens]


def learned_positions(W_pos: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """pos_embed = W_pos[positions].  [pos, d_model]"""
    return W_pos[positions]


def sinusoid_frequencies(d_model: int) -> np.ndarray:
    """omega_i = 10000^(-2i / d_model), i = 0 .. d_model/2 - 1.  [d_model / 2]"""
    return 10000.0 ** (-np.arange(0, d_model, 2) / d_model)


def sinusoidal_positions(positions: np.ndarray, d_model: int) -> np.ndarray:
    """PE[p, 2i] = sin(p omega_i),  PE[p, 2i+1] = cos(p omega_i).  [pos, d_model]"""
    angles = positions[:, None] * sinusoid_frequencies(d_model)[None, :]  # [pos, d_model / 2]
    return np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(len(positions), d_model)


# -- norms ------------------------------------------------------------------------------------------------


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """LayerNorm(x) = (x - mean(x)) / sigma * w + b,  sigma = sqrt(var(x) + eps).  Returns (out, sigma)."""
    centred = x - x.mean(-1, keepdims=True)  # [..., d_model]
    sigma = np.sqrt((centred**2).mean(-1, keepdims=True) + eps)  # [..., 1]
    out = centred / sigma * w
    return (out + b if b is not None else out), sigma


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """RMSNorm(x) = x / rms * w,  rms = sqrt(mean(x^2) + eps).  Returns (out, rms)."""
    rms = np.sqrt((x**2).mean(-1, keepdims=True) + eps)  # [..., 1]
    return x / rms * w, rms


# -- attention --------------------------------------------------------------------------------------------


def project(x: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """x W[h] + b[h] for every head h: [batch, pos, d_model] @ [heads, d_model, d_head] -> [batch, pos, heads, d_head]"""
    out = np.einsum("bpd,hde->bphe", x, W)
    return out + b if b is not None else out


def rope_frequencies(d_rot: int, base: float) -> np.ndarray:
    """theta_i = base^(-2i / d_rot), i = 0 .. d_rot/2 - 1.  [d_rot / 2]"""
    return base ** (-np.arange(0, d_rot, 2) / d_rot)


def rope(x: np.ndarray, positions: np.ndarray, d_rot: int, base: float) -> np.ndarray:
    """Rotate each pair (x_i, x_{i + d_rot/2}) by the angle p theta_i; dimensions past d_rot pass through.
    [batch, pos, heads, d_head] -> same."""
    half = d_rot // 2
    angles = positions[:, None] * rope_frequencies(d_rot, base)[None, :]  # [pos, d_rot / 2]
    cos, sin = np.cos(angles)[None, :, None, :], np.sin(angles)[None, :, None, :]  # [1, pos, 1, d_rot / 2]
    x1, x2, rest = x[..., :half], x[..., half:d_rot], x[..., d_rot:]
    return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest], axis=-1)


def alibi_slopes(n_heads: int) -> np.ndarray:
    """m_h = 2^(-8 (h+1) / n) for the power of two n <= n_heads, then every other slope of 2n.  [heads]"""
    closest = 2 ** (n_heads.bit_length() - 1)
    slopes = [2.0 ** (-8 * (h + 1) / closest) for h in range(closest)]
    slopes += [2.0 ** (-8 * (h + 1) / (2 * closest)) for h in range(2 * closest)][0::2][: n_heads - closest]
    return np.array(slopes)


def alibi_bias(n_heads: int, q_positions: np.ndarray, k_positions: np.ndarray) -> np.ndarray:
    """bias[h, i, j] = -m_h |i - j|.  [heads, q_pos, k_pos]"""
    distance = np.abs(q_positions[:, None] - k_positions[None, :])  # [q_pos, k_pos]
    return -alibi_slopes(n_heads)[:, None, None] * distance[None]


def attention_scores(q: np.ndarray, k: np.ndarray, scale: float) -> np.ndarray:
    """scores[h] = scale * q_h k_h^T:  [q_pos, d_head] @ [d_head, k_pos] -> [batch, heads, q_pos, k_pos]"""
    return np.einsum("bqhe,bkhe->bhqk", q, k) * scale


def soft_cap(x: np.ndarray, cap: float | None) -> np.ndarray:
    """c tanh(x / c): every value squashed into (-c, c), nearly unchanged where |x| << c (Gemma 2's soft-capping
    of attention scores and of the logits); x itself when there is no cap."""
    return x if cap is None else cap * np.tanh(x / cap)


def allowed_keys(q_positions: np.ndarray, k_positions: np.ndarray, causal: bool, key_padding: np.ndarray | None) -> np.ndarray:
    """True where query i may attend to key j: j <= i if causal; never to padding (a query with no key
    left attends to all).  [batch or 1, 1, q_pos, k_pos]"""
    allowed = np.ones((1, 1, len(q_positions), len(k_positions)), dtype=bool)
    if causal:
        allowed = allowed & (k_positions[None, :] <= q_positions[:, None])[None, None]
    if key_padding is not None:
        allowed = allowed & key_padding.astype(bool)[:, None, None, :]
        allowed = allowed | ~allowed.any(-1, keepdims=True)
    return allowed


def mask(scores: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """scores where allowed, -inf elsewhere (so softmax gives those keys weight 0)."""
    return np.where(allowed, scores, -np.inf)


def softmax(scores: np.ndarray) -> np.ndarray:
    """softmax(s)_j = exp(s_j - max s) / sum_k exp(s_k - max s), over the last axis (keys)."""
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attend(pattern: np.ndarray, v: np.ndarray) -> np.ndarray:
    """z_h = pattern_h v_h:  [q_pos, k_pos] @ [k_pos, d_head] -> [batch, q_pos, heads, d_head]"""
    return np.einsum("bhqk,bkhe->bqhe", pattern, v)


def combine_heads(z: np.ndarray, W_O: np.ndarray, b_O: np.ndarray | None) -> np.ndarray:
    """attn_out = sum_h z_h W_O[h] + b_O  (= Concat(z_1..z_H) W^O):  -> [batch, q_pos, d_model]"""
    out = np.einsum("bqhe,hed->bqd", z, W_O)
    return out + b_O if b_O is not None else out


# -- MLP --------------------------------------------------------------------------------------------------

_erf = np.vectorize(math.erf)


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU(x) = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GPT-2's GELU: x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def relu(x: np.ndarray) -> np.ndarray:
    """ReLU(x) = max(0, x)."""
    return np.maximum(x, 0.0)


def relu2(x: np.ndarray) -> np.ndarray:
    """ReLU^2(x) = max(0, x)^2 (Primer)."""
    return np.maximum(x, 0.0) ** 2


def silu(x: np.ndarray) -> np.ndarray:
    """SiLU(x) = x sigmoid(x) = x / (1 + exp(-x))."""
    return x / (1.0 + np.exp(-x))


ACTIVATIONS = {"gelu": gelu, "gelu_tanh": gelu_tanh, "relu": relu, "relu2": relu2}
GATES = {"swiglu": silu, "geglu": gelu, "geglu_tanh": gelu_tanh}  # gated MLPs: post = gate(x W_gate + b_gate) * (x W_in + b_in)


def linear(x: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """x W + b."""
    return x @ W + b if b is not None else x @ W


# -- the unembedding --------------------------------------------------------------------------------------


def unembed(x: np.ndarray, W_U: np.ndarray, b_U: np.ndarray | None) -> np.ndarray:
    """logits = x W_U + b_U:  [pos, d_model] @ [d_model, d_vocab_out] -> [batch, pos, d_vocab_out]"""
    return linear(x, W_U, b_U)


# -- assembling the model ---------------------------------------------------------------------------------


class _Stack:
    """Reads one stack's parameters (``prefix`` = "" or "encoder.") and records intermediates."""

    def __init__(self, params: Params, config: ModelConfig, prefix: str, record: Record):
        self.p, self.cfg, self.prefix, self.record = params, config, prefix, record
        self.segment: list[np.ndarray | None] | None = None  # Transformer-XL: each layer's memory, while reading segments

    def get(self, name: str) -> np.ndarray | None:
        return self.p.get(self.prefix + name)

    def rec(self, name: str, value: np.ndarray) -> np.ndarray:
        self.record(self.prefix + name, value)
        return value

    def norm(self, name: str, x: np.ndarray) -> np.ndarray:
        """The config's norm (layer_norm, rms_norm, or identity), recording ``name`` and ``name.scale``."""
        norm = self.cfg.norm if (not name.endswith("ln_final") or self.cfg.final_norm) else "none"
        if norm == "layernorm":
            out, sigma = layer_norm(x, self.get(f"{name}.w"), self.get(f"{name}.b"), self.cfg.norm_eps)
        elif norm == "rmsnorm":
            out, sigma = rms_norm(x, self.get(f"{name}.w"), self.cfg.norm_eps)
        else:
            return self.rec(name, x)
        self.rec(f"{name}.scale", sigma)
        return self.rec(name, out)

    def residual(self, x: np.ndarray, norm_name: str, sublayer: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Pre-LN: x + Sublayer(Norm(x));  Post-LN: Norm(x + Sublayer(x))."""
        if self.cfg.norm_position == "pre":
            return x + sublayer(self.norm(norm_name, x))
        return self.norm(norm_name, x + sublayer(x))

    def attention(self, name: str, *args, **kwargs) -> np.ndarray:
        """Attention ``name`` ("blocks.2.attn") with the config of its block: layers may differ in n_heads, d_head
        (so in scale) and d_mlp (``ModelConfig.layer_config``)."""
        if not self.cfg.per_layer:
            return self.heads(name, *args, **kwargs)
        stack_config, self.cfg = self.cfg, self.cfg.layer_config(int(name.split("blocks.", 1)[1].split(".", 1)[0]))
        try:
            return self.heads(name, *args, **kwargs)
        finally:
            self.cfg = stack_config

    def heads(self, name: str, x, memory, positions, key_padding, causal: bool, prefix=None) -> np.ndarray:
        """Multi-head attention ``name`` ("blocks.0.attn"): queries from x, keys/values from memory (cross-attention),
        or from [prefix ; x] (a Transformer-XL memory ``prefix`` of earlier states, then x)."""
        cfg, g = self.cfg, lambda w: self.get(f"{name}.{w}")
        cross = memory is not None
        y = memory if cross else (x if prefix is None else np.concatenate([prefix, x], axis=1))
        q = self.rec(f"{name}.q", project(x, g("W_Q"), g("b_Q")))  # [batch, q_pos, heads, d_head]
        k = self.rec(f"{name}.k", project(y, g("W_K"), g("b_K")))  # [batch, k_pos, kv_heads, d_head]
        v = self.rec(f"{name}.v", project(y, g("W_V"), g("b_V")))
        if cfg.qk_norm:  # q_h <- Norm(q_h), k_h <- Norm(k_h) over d_head
            q, k = self.norm(f"{name}.q_norm", q), self.norm(f"{name}.k_norm", k)
        k_positions = np.arange(k.shape[1]) if cross else np.arange(positions[-1] + 1 - k.shape[1], positions[-1] + 1)
        if cfg.positional == "rope" and not cross:
            d_rot = int(cfg.d_head * cfg.rope_fraction)
            q, k = rope(q, positions, d_rot, cfg.rope_base), rope(k, k_positions, d_rot, cfg.rope_base)
        group = cfg.n_heads // cfg.n_kv_heads  # grouped-query: query head h reads kv head h // group
        k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)  # [batch, k_pos, heads, d_head]
        pattern_of = _PATTERNS["full" if cross else cfg.attention]
        pattern, v = pattern_of(self, name, q, k, v, positions, k_positions, key_padding, causal and not cross, cross)
        z = self.rec(f"{name}.z", attend(pattern, v))  # [batch, q_pos, heads, d_head]
        return combine_heads(z, g("W_O"), g("b_O"))  # [batch, q_pos, d_model]

    def score_bias(self, name: str, q_positions, k_positions, causal: bool) -> np.ndarray | float:
        """The positional scheme's additive score bias (ALiBi, T5) of self-attention ``name``, else 0."""
        cfg = self.cfg
        if cfg.positional == "alibi":
            return alibi_bias(cfg.n_heads, q_positions, k_positions)
        if cfg.positional == "t5":
            return rv.t5_bias(self.get(f"{name}.score_bias.W_bias"), q_positions, k_positions, not causal, cfg.t5_max_distance)
        return 0.0

    def softmax_pattern(self, name, q, k, v, positions, k_positions, key_padding, causal, cross):
        """softmax(scale q k^T + bias) over the keys the pattern allows: full, sliding window or sparse."""
        scores = soft_cap(attention_scores(q, k, self.cfg.scale), self.cfg.attn_softcap)  # [batch, heads, q_pos, k_pos]
        if not cross:
            scores = scores + self.score_bias(name, positions, k_positions, causal)
        if cross or self.cfg.attention == "full":  # a query left with no key (pure padding) attends to all
            allowed = allowed_keys(positions, k_positions, causal, key_padding)
        else:  # block-sparse patterns: such a row gets weight 0 everywhere
            allowed = rv.ALLOWED[self.cfg.attention](positions, k_positions, causal, self.cfg)[None, None]
            allowed = allowed if key_padding is None else allowed & key_padding.astype(bool)[:, None, None, :]
        scores = self.rec(f"{name}.scores", mask(scores, allowed))
        pattern = softmax(np.where(allowed, scores, -1e300))  # -inf rows (no key) would be NaN
        return self.rec(f"{name}.pattern", np.where(allowed, pattern, 0.0)), v

    def linear_pattern(self, name, q, k, v, positions, k_positions, key_padding, causal, cross):
        """Linear attention: kernel values phi(q_i).phi(k_j) normalised per query (no softmax, no scale)."""
        if key_padding is not None:  # padding keys weigh nothing
            k = np.where(key_padding.astype(bool)[:, :, None, None], k, -np.inf)  # phi(-inf) = 0
        scores = self.rec(f"{name}.scores", rv.linear_scores(q, k, rv.causal_allowed(positions, k_positions, causal, self.cfg)))
        return self.rec(f"{name}.pattern", rv.linear_pattern(scores)), v

    def linformer_pattern(self, name, q, k, v, positions, k_positions, key_padding, causal, cross):
        """Linformer: keys and values projected along positions to linformer_k slots, then softmax over slots."""
        if key_padding is not None:
            real = key_padding.astype(np.float64)[:, :, None, None]
            k, v = k * real, v * real
        k_proj, v_proj = rv.linformer_project(self.get(f"{name}.E"), k), rv.linformer_project(self.get(f"{name}.F"), v)
        scores = self.rec(f"{name}.scores", attention_scores(q, k_proj, self.cfg.scale))  # [batch, heads, q_pos, slots]
        return self.rec(f"{name}.pattern", softmax(scores)), v_proj

    def mlp(self, name: str, x: np.ndarray) -> np.ndarray:
        """act(x W_in + b_in) W_out + b_out, recording ``mlp.pre`` and ``mlp.post``; gated (SwiGLU, GeGLU):
        gate(x W_gate + b_gate) * (x W_in + b_in), with ``mlp.pre`` the gate's input."""
        act = self.cfg.act
        if act in GATES:
            pre = self.rec(f"{name}.pre", linear(x, self.get(f"{name}.W_gate"), self.get(f"{name}.b_gate")))
            up = self.rec(f"{name}.pre_linear", linear(x, self.get(f"{name}.W_in"), self.get(f"{name}.b_in")))
            post = self.rec(f"{name}.post", GATES[act](pre) * up)  # [batch, pos, d_mlp]
            return linear(post, self.get(f"{name}.W_out"), self.get(f"{name}.b_out"))
        pre = self.rec(f"{name}.pre", linear(x, self.get(f"{name}.W_in"), self.get(f"{name}.b_in")))  # [batch, pos, d_mlp]
        post = self.rec(f"{name}.post", ACTIVATIONS[act](pre))
        return linear(post, self.get(f"{name}.W_out"), self.get(f"{name}.b_out"))  # [batch, pos, d_model]

    def block(self, i: int, x, positions, key_padding, causal, memory=None, memory_padding=None) -> np.ndarray:
        """One layer, built from its own config (``layer_config``: Gemma 2 / 3's global layers among sliding ones)."""
        stack_config, self.cfg = self.cfg, self.cfg.layer_config(i)
        try:
            return self.layer(i, x, positions, key_padding, causal, memory, memory_padding)
        finally:
            self.cfg = stack_config

    def layer(self, i: int, x, positions, key_padding, causal, memory=None, memory_padding=None) -> np.ndarray:
        """One layer: self-attention, [cross-attention], MLP, each in its residual rule; with sandwich norms
        (Gemma 2 / 3) each sublayer's output is normalised too: x + Norm_post(Sublayer(Norm(x)))."""
        b = f"blocks.{i}"
        post = (lambda name, out: self.norm(name, out)) if self.cfg.sandwich_norm else (lambda name, out: out)
        x = self.rec(f"{b}.resid_pre", x)

        def attn(h):
            prefix = self.segment[i] if self.segment is not None else None  # Transformer-XL: SG(mem_l)
            out = self.attention(f"{b}.attn", h, None, positions, key_padding, causal, prefix)
            if self.segment is not None:  # mem_l <- the last M rows of [mem_l ; h]
                self.segment[i] = (h if prefix is None else np.concatenate([prefix, h], axis=1))[:, -self.cfg.memory_len :]
            return self.rec(f"{b}.attn_out", post(f"{b}.ln1_post", out))

        if self.cfg.parallel_residual:  # GPT-J / GPT-NeoX: both sublayers read x;  x + Attn(Norm1(x)) + MLP(Norm2(x))
            attn_out = attn(self.norm(f"{b}.ln1", x))
            mlp_out = self.rec(f"{b}.mlp_out", self.mlp(f"{b}.mlp", self.norm(f"{b}.ln2", x)))
            return self.rec(f"{b}.resid_post", self.rec(f"{b}.resid_mid", x + attn_out) + mlp_out)
        x = self.rec(f"{b}.resid_mid", self.residual(x, f"{b}.ln1", attn))
        if memory is not None:
            cross = lambda h: self.rec(
                f"{b}.cross_attn_out", self.attention(f"{b}.cross_attn", h, memory, positions, memory_padding, False)
            )
            x = self.rec(f"{b}.resid_mid_cross", self.residual(x, f"{b}.ln_cross", cross))
        if not self.cfg.attn_only:
            x = self.residual(x, f"{b}.ln2", lambda h: self.rec(f"{b}.mlp_out", post(f"{b}.ln2_post", self.mlp(f"{b}.mlp", h))))
        return self.rec(f"{b}.resid_post", x)

    def embed(self, inputs: np.ndarray) -> np.ndarray:
        """embed = W_E[tokens], or [W_cls ; patches W_patch + b_patch] for images.  [batch, pos, d_model]"""
        if self.cfg.input == "patches":
            g = self.get
            return self.rec("embed", rv.patch_embed(inputs, g("embed.W_patch"), g("embed.b_patch"), g("embed.W_cls"), self.cfg.patch_size))
        return self.rec("embed", embed(self.get("embed.W_E"), inputs))

    def run(self, inputs, key_padding, causal, n_blocks, memory=None, memory_padding=None) -> np.ndarray:
        """resid_0 = embed (+ positions); the blocks; the final norm.  [batch, pos, d_model]
        With a Transformer-XL memory the positions continue after the memory's (offset = its length)."""
        x = self.embed(inputs)  # [batch, pos, d_model]
        offset = 0 if not self.segment or self.segment[0] is None else self.segment[0].shape[1]
        positions = np.arange(offset, offset + x.shape[1])
        additive = _ADDITIVE_POSITIONS.get(self.cfg.positional)
        if additive is not None:
            x = x + self.rec("pos_embed", additive(self, positions))
        if self.cfg.embed_norm:  # BERT: resid_0 = Norm(embed + pos_embed)
            x = self.norm("ln_embed", x)
        for i in range(n_blocks):
            x = self.block(i, x, positions, key_padding, causal, memory, memory_padding)
        return self.norm("ln_final", x)


_ADDITIVE_POSITIONS = {  # positional schemes that add a vector to resid_0 (the others act inside attention)
    "learned": lambda stack, positions: learned_positions(stack.get("pos_embed.W_pos"), positions),
    "sinusoidal": lambda stack, positions: sinusoidal_positions(positions, stack.cfg.d_model),
}
_PATTERNS = {  # config.attention -> how a self-attention layer turns q, k, v into a pattern (and the values it weighs)
    "full": _Stack.softmax_pattern, "sliding": _Stack.softmax_pattern, "sparse": _Stack.softmax_pattern,
    "linear": _Stack.linear_pattern, "linformer": _Stack.linformer_pattern,
}


def forward(
    params: Params,
    config: ModelConfig,
    tokens,
    src=None,
    *,
    attention_mask=None,
    src_attention_mask=None,
    record: Record | None = None,
) -> np.ndarray:
    """The logits of ``Transformer(config)`` with parameters ``params``: [batch, pos, d_vocab_out].

    ``tokens`` [batch, pos] (the decoder input for an encoder-decoder; images [batch, channels, H, W] for a
    vision model, which returns class logits [batch, n_classes]), ``src`` [batch, src_pos] the encoder
    input; masks are 1 for real tokens, 0 for padding. ``record(name, array)`` is called with every
    intermediate, under the model's hook-point names. A Transformer-XL model (``memory_len``) given more
    than ``n_ctx`` tokens reads them segment by segment, as the model does (``record`` then keeps the last
    segment's values, as ``run_with_cache`` does).
    """
    record = record or (lambda name, value: None)
    tokens = _as_images(tokens, config) if config.input == "patches" else _as_tokens(tokens, "tokens", config)
    pad = None if attention_mask is None else np.asarray(attention_mask)
    memory = None
    if config.arch == "encoder-decoder":
        if src is None:
            raise InputError("an encoder-decoder model needs the source sequence: forward(..., src=...)")
        src_pad = None if src_attention_mask is None else np.asarray(src_attention_mask)
        encoder = _Stack(params, config, "encoder.", record)
        memory = encoder.run(_as_tokens(src, "src", config), src_pad, causal=False, n_blocks=config.n_layers)
        n_blocks = config.n_decoder_layers
    else:
        src_pad, n_blocks = None, config.n_layers
    stack = _Stack(params, config, "", record)
    if config.memory_len and tokens.shape[1] > config.n_ctx:  # Transformer-XL: segment after segment
        if pad is not None:
            raise InputError("a Transformer-XL input longer than n_ctx is read in segments: padding masks are not supported")
        stack.segment = [None] * n_blocks
        segments = [tokens[:, s : s + config.n_ctx] for s in range(0, tokens.shape[1], config.n_ctx)]
        x = np.concatenate([stack.run(seg, None, config.causal, n_blocks) for seg in segments], axis=1)
    else:
        x = stack.run(tokens, pad, config.causal, n_blocks, memory, src_pad)  # [batch, pos, d_model]
    if config.input == "patches":  # a vision model: the class token's final vector is classified
        logits = linear(x[:, 0], params["classifier.W"], params["classifier.b"])  # [batch, n_classes]
        record("logits", logits)
        return logits
    if config.unembed_transform:  # BERT's MLM head: h = Norm(act(x W_T + b_T))
        pre = stack.rec("unembed_transform.pre", linear(x, params["unembed_transform.W_T"], params.get("unembed_transform.b_T")))
        x = stack.rec("unembed_transform", stack.norm("unembed_transform.ln", ACTIVATIONS[config.act](pre)))
    W_U = params["embed.W_E"].T if config.tie_embeddings else params["unembed.W_U"]
    logits = soft_cap(unembed(x, W_U, params.get("unembed.b_U")), config.logit_softcap)  # [batch, pos, d_vocab_out]
    record("logits", logits)
    return logits


def classify(params: Params, config: ModelConfig, tokens, *, attention_mask=None) -> np.ndarray:
    """Encoder classification: class_logits = resid_final[:, 0] W + b.  [batch, n_classes]"""
    if not config.n_classes:
        raise InputError("classify() needs an encoder config with n_classes > 0")
    pad = None if attention_mask is None else np.asarray(attention_mask)
    stack = _Stack(params, config, "", lambda name, value: None)
    x = stack.run(_as_tokens(tokens, "tokens", config), pad, False, config.n_layers)  # [batch, pos, d_model]
    return linear(x[:, 0], params["classifier.W"], params["classifier.b"])


def _as_tokens(tokens, what: str, config: ModelConfig) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise InputError(f"{what} must be integer token ids of shape [batch, pos], got {tokens.dtype} {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= config.d_vocab):
        raise InputError(f"{what} contains ids outside the vocabulary [0, {config.d_vocab})")
    return tokens


def _as_images(images, config: ModelConfig) -> np.ndarray:
    """Images [batch, channels, H, W] (or [batch, H, W] with one channel, or flattened [batch, c * H * W])."""
    images = np.asarray(images, dtype=np.float64)
    c, size = config.n_channels, config.image_size
    if images.ndim == 2 and images.shape[1] == c * size * size:
        images = images.reshape(-1, c, size, size)
    elif images.ndim == 3 and c == 1:
        images = images[:, None]
    if images.shape[1:] != (c, size, size):
        raise InputError(f"images must have shape [batch, {c}, {size}, {size}], got {list(images.shape)}")
    return images
