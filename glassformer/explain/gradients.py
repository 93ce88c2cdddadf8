"""Backpropagation by hand: the gradients of attention, the MLP, LayerNorm and the loss, derived with the
chain rule and written in NumPy (float64). ``tests/explain/test_gradients.py`` checks each against autograd.

Notation: for a scalar loss L, ``dX`` is dL/dX and has X's shape. For Y = X W, the two rules everything
below is built from are

    dX = dY W^T          dW = X^T dY          (and for Y = X + b:  db = sum of dY over rows)

The derivations (the guide, section "Backward", walks through them):

* Softmax, row by row: P = softmax(S) has Jacobian dP_j/dS_k = P_j (delta_jk - P_k), so
      dS = P * (dP - sum_k(dP * P))                       (* is element-wise; the sum is over the row)
  Masked entries have P = 0, so no gradient flows into them.
* Attention, head h, queries from x [q_pos, d_model], keys/values from y [k_pos, d_model]:
      Q = x W_Q + b_Q,  K = y W_K + b_K,  V = y W_V + b_V,  S = c Q K^T (+ mask),  P = softmax(S),
      Z = P V,  out = sum_h Z_h W_O[h] + b_O
  backwards:  dW_O[h] = Z_h^T d_out,  dZ_h = d_out W_O[h]^T,  dP = dZ V^T,  dV = P^T dZ,  dS = softmax',
      dQ = c dS K,  dK = c dS^T Q,  dW_Q = x^T dQ,  dx = dQ W_Q^T (+ dK W_K^T + dV W_V^T for self-attention).
* MLP:  pre = x W_in + b_in,  post = act(pre),  out = post W_out + b_out
      dW_out = post^T d_out,  d_post = d_out W_out^T,  d_pre = d_post * act'(pre),  dW_in = x^T d_pre,
      dx = d_pre W_in^T,   with  relu' = [pre > 0],  gelu' = Phi(x) + x phi(x).
* LayerNorm:  x_hat = (x - mu) / sigma,  y = x_hat w + b
      dw = sum(dy * x_hat),  db = sum(dy),  g = dy * w,  dx = (g - mean(g) - x_hat mean(g * x_hat)) / sigma
* Cross-entropy of softmax(logits) against target t:  d_logits = (softmax(logits) - onehot(t)) / N.
* RMSNorm:  y = x / r * w,  r = sqrt(mean(x^2) + eps)
      dw = sum(dy * x / r),  g = dy * w,  dx = (g - (x / r) mean(g * x / r)) / r
* Grouped-query attention: kv head g serves query heads g r .. g r + r - 1, so K and V are repeated r
  times along the head axis before the scores; backwards, each kv head's dK, dV is the sum over its r
  query heads.
* RoPE rotates Q and K by an angle per position, Q' = R_p Q; R_p is orthogonal, so dQ = R_p^T dQ' =
  R_{-p} dQ' (the same rotation by the opposite angle). ALiBi adds a constant bias to S: nothing to
  differentiate, the gradient of S is unchanged.
* Gated MLP:  gate = x W_gate + b_gate,  lin = x W_in + b_in,  h = act(gate) * lin,  out = h W_out + b_out
      d_lin = dh * act(gate),  d_gate = dh * lin * act'(gate),  dx = d_gate W_gate^T + d_lin W_in^T,
      with silu' = sigmoid(x) (1 + x (1 - sigmoid(x))).
* Embeddings: embed = W_E[tokens] picks rows, so dW_E[t] = sum of d_embed over the positions holding t
  (a scatter-add); likewise dW_pos[p] = sum over the batch of d_embed at position p.
* A whole model is these pieces in sequence, each residual addition copying its gradient to both
  branches: :func:`model_backward` (``tests/explain/test_gradients.py`` checks it against autograd).

Everything is batched over a leading ``batch`` axis; parameter gradients sum over it.
"""

from __future__ import annotations

import math

import numpy as np

from glassformer.errors import InputError
from glassformer.explain import reference as ref

# -- softmax and the loss ---------------------------------------------------------------------------------


def softmax_backward(P: np.ndarray, dP: np.ndarray) -> np.ndarray:
    """dS = P * (dP - sum_k dP_k P_k), row by row (the last axis)."""
    return P * (dP - (dP * P).sum(-1, keepdims=True))


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """(L, d_logits) for L = mean_n -log softmax(logits_n)[t_n];  d_logits = (softmax - onehot) / N.
    logits [N, vocab], targets [N]."""
    P = ref.softmax(logits)  # [N, vocab]
    n = len(targets)
    loss = -np.log(P[np.arange(n), targets]).mean()
    onehot = np.zeros_like(P)
    onehot[np.arange(n), targets] = 1.0
    return float(loss), (P - onehot) / n


# -- attention --------------------------------------------------------------------------------------------


def attention_forward(params: dict, x: np.ndarray, y: np.ndarray | None = None, *, scale: float, causal: bool,
                      rope: tuple[int, float] | None = None, bias: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """out = sum_h softmax(c (x W_Q[h] + b_Q[h]) (y W_K[h] + b_K[h])^T + mask) (y W_V[h] + b_V[h]) W_O[h] + b_O.

    ``params`` holds W_Q, W_K, W_V [heads, d_model, d_head], W_O [heads, d_head, d_model] and optionally
    b_Q, b_K, b_V [heads, d_head], b_O [d_model]; x [batch, q_pos, d_model], y (keys/values; default x)
    [batch, k_pos, d_model]. Returns (out [batch, q_pos, d_model], tape for :func:`attention_backward`).
    W_K, W_V may have fewer heads (grouped-query attention); ``rope = (d_rot, base)`` rotates Q and K;
    ``bias`` [heads, q_pos, k_pos] is added to the scores (ALiBi).
    """
    _check_heads(params)
    y = x if y is None else y
    group = params["W_Q"].shape[0] // params["W_K"].shape[0]  # query heads per key/value head
    Q = ref.project(x, params["W_Q"], params.get("b_Q"))  # [batch, q_pos, heads, d_head]
    K = ref.project(y, params["W_K"], params.get("b_K"))  # [batch, k_pos, kv_heads, d_head]
    V = ref.project(y, params["W_V"], params.get("b_V"))
    if rope is not None:
        Q, K = ref.rope(Q, np.arange(x.shape[1]), *rope), ref.rope(K, np.arange(y.shape[1]), *rope)
    K, V = np.repeat(K, group, axis=2), np.repeat(V, group, axis=2)  # [batch, k_pos, heads, d_head]
    S = ref.attention_scores(Q, K, scale)  # [batch, heads, q_pos, k_pos]
    if bias is not None:
        S = S + bias
    allowed = ref.allowed_keys(np.arange(x.shape[1]), np.arange(y.shape[1]), causal, None)
    P = ref.softmax(ref.mask(S, allowed))  # [batch, heads, q_pos, k_pos]
    Z = ref.attend(P, V)  # [batch, q_pos, heads, d_head]
    out = ref.combine_heads(Z, params["W_O"], params.get("b_O"))  # [batch, q_pos, d_model]
    tape = dict(x=x, y=y, Q=Q, K=K, V=V, P=P, Z=Z, scale=scale, self_attention=y is x, group=group, rope=rope)
    return out, tape


def attention_backward(params: dict, tape: dict, d_out: np.ndarray) -> dict[str, np.ndarray]:
    """The gradients of every attention parameter and input, given d_out = dL/d(out) [batch, q_pos, d_model].

    Returns W_Q, W_K, W_V, W_O (and b_* when present), x, and y (cross-attention only; for self-attention
    the key/value path is already added into x)."""
    x, y, Q, K, V, P, Z, c = (tape[k] for k in ("x", "y", "Q", "K", "V", "P", "Z", "scale"))
    grads = {}
    grads["W_O"] = np.einsum("bqhe,bqd->hed", Z, d_out)  # Z_h^T d_out     [heads, d_head, d_model]
    if params.get("b_O") is not None:
        grads["b_O"] = d_out.sum((0, 1))  # [d_model]
    dZ = np.einsum("bqd,hed->bqhe", d_out, params["W_O"])  # d_out W_O[h]^T  [batch, q_pos, heads, d_head]
    dP = np.einsum("bqhe,bkhe->bhqk", dZ, V)  # dZ V^T           [batch, heads, q_pos, k_pos]
    dV = np.einsum("bhqk,bqhe->bkhe", P, dZ)  # P^T dZ           [batch, k_pos, heads, d_head]
    dS = softmax_backward(P, dP)  # [batch, heads, q_pos, k_pos]
    dQ = c * np.einsum("bhqk,bkhe->bqhe", dS, K)  # c dS K          [batch, q_pos, heads, d_head]
    dK = c * np.einsum("bhqk,bqhe->bkhe", dS, Q)  # c dS^T Q        [batch, k_pos, heads, d_head]
    group = tape["group"]
    if group > 1:  # each kv head's gradient is the sum over the query heads it serves
        b, k, h, e = dK.shape
        dK, dV = (d.reshape(b, k, h // group, group, e).sum(3) for d in (dK, dV))  # [batch, k_pos, kv_heads, d_head]
    if tape["rope"] is not None:  # undo the rotation: R_p^T = R_{-p}
        dQ = ref.rope(dQ, -np.arange(x.shape[1]), *tape["rope"])
        dK = ref.rope(dK, -np.arange(y.shape[1]), *tape["rope"])
    for name, inp, d in (("Q", x, dQ), ("K", y, dK), ("V", y, dV)):
        grads[f"W_{name}"] = np.einsum("bpd,bphe->hde", inp, d)  # input^T d   [heads, d_model, d_head]
        if params.get(f"b_{name}") is not None:
            grads[f"b_{name}"] = d.sum((0, 1))  # [heads, d_head]
    dx = np.einsum("bqhe,hde->bqd", dQ, params["W_Q"])  # dQ W_Q^T  [batch, q_pos, d_model]
    dy = np.einsum("bkhe,hde->bkd", dK, params["W_K"]) + np.einsum("bkhe,hde->bkd", dV, params["W_V"])
    if tape["self_attention"]:
        grads["x"] = dx + dy
    else:
        grads["x"], grads["y"] = dx, dy
    return grads


# -- MLP --------------------------------------------------------------------------------------------------


def _std_normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + ref._erf(x / math.sqrt(2.0)))


def activation_derivative(act: str, pre: np.ndarray) -> np.ndarray:
    """act'(pre): relu' = [pre > 0];  gelu' = Phi(x) + x phi(x);  gelu_tanh' by the product rule."""
    if act == "relu":
        return (pre > 0).astype(pre.dtype)
    if act == "gelu":
        return _std_normal_cdf(pre) + pre * np.exp(-0.5 * pre**2) / math.sqrt(2.0 * math.pi)
    if act == "gelu_tanh":
        k = math.sqrt(2.0 / math.pi)
        t = np.tanh(k * (pre + 0.044715 * pre**3))
        return 0.5 * (1.0 + t) + 0.5 * pre * (1.0 - t**2) * k * (1.0 + 3 * 0.044715 * pre**2)
    raise InputError(f"unknown activation {act!r}; known: relu, gelu, gelu_tanh")


def mlp_forward(params: dict, x: np.ndarray, act: str = "gelu") -> tuple[np.ndarray, dict]:
    """out = act(x W_in + b_in) W_out + b_out.  x [batch, pos, d_model] -> (out [batch, pos, d_model], tape)."""
    if act not in ref.ACTIVATIONS:
        raise InputError(f"unknown activation {act!r}; known: {', '.join(ref.ACTIVATIONS)}")
    pre = ref.linear(x, params["W_in"], params.get("b_in"))  # [batch, pos, d_mlp]
    post = ref.ACTIVATIONS[act](pre)
    out = ref.linear(post, params["W_out"], params.get("b_out"))  # [batch, pos, d_model]
    return out, dict(x=x, pre=pre, post=post, act=act)


def mlp_backward(params: dict, tape: dict, d_out: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients of W_in, b_in, W_out, b_out and x given d_out [batch, pos, d_model]."""
    x, pre, post = tape["x"], tape["pre"], tape["post"]
    grads = {"W_out": np.einsum("bpm,bpd->md", post, d_out)}  # post^T d_out   [d_mlp, d_model]
    if params.get("b_out") is not None:
        grads["b_out"] = d_out.sum((0, 1))
    d_post = d_out @ params["W_out"].T  # [batch, pos, d_mlp]
    d_pre = d_post * activation_derivative(tape["act"], pre)  # [batch, pos, d_mlp]
    grads["W_in"] = np.einsum("bpd,bpm->dm", x, d_pre)  # x^T d_pre   [d_model, d_mlp]
    if params.get("b_in") is not None:
        grads["b_in"] = d_pre.sum((0, 1))
    grads["x"] = d_pre @ params["W_in"].T  # [batch, pos, d_model]
    return grads


# -- LayerNorm --------------------------------------------------------------------------------------------


def layer_norm_forward(params: dict, x: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, dict]:
    """y = (x - mu) / sigma * w + b."""
    y, sigma = ref.layer_norm(x, params["w"], params.get("b"), eps)
    x_hat = (x - x.mean(-1, keepdims=True)) / sigma  # [batch, pos, d_model]
    return y, dict(x_hat=x_hat, sigma=sigma)


def layer_norm_backward(params: dict, tape: dict, dy: np.ndarray) -> dict[str, np.ndarray]:
    """dw = sum(dy x_hat),  db = sum(dy),  dx = (g - mean(g) - x_hat mean(g x_hat)) / sigma  with g = dy w."""
    x_hat, sigma = tape["x_hat"], tape["sigma"]
    grads = {"w": (dy * x_hat).sum((0, 1))}
    if params.get("b") is not None:
        grads["b"] = dy.sum((0, 1))
    g = dy * params["w"]  # [batch, pos, d_model]
    grads["x"] = (g - g.mean(-1, keepdims=True) - x_hat * (g * x_hat).mean(-1, keepdims=True)) / sigma
    return grads


# -- RMSNorm, the gated MLP, embeddings -------------------------------------------------------------------


def rms_norm_forward(params: dict, x: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, dict]:
    """y = x / r * w,  r = sqrt(mean(x^2) + eps)."""
    y, r = ref.rms_norm(x, params["w"], eps)  # [batch, pos, d_model], [batch, pos, 1]
    return y, dict(x_hat=x / r, r=r)


def rms_norm_backward(params: dict, tape: dict, dy: np.ndarray) -> dict[str, np.ndarray]:
    """dw = sum(dy x_hat),  dx = (g - x_hat mean(g x_hat)) / r  with g = dy w, x_hat = x / r."""
    x_hat, r = tape["x_hat"], tape["r"]
    g = dy * params["w"]  # [batch, pos, d_model]
    return {"w": (dy * x_hat).sum((0, 1)), "x": (g - x_hat * (g * x_hat).mean(-1, keepdims=True)) / r}


GATES = {"swiglu": "silu", "geglu": "gelu"}  # gated MLP -> the nonlinearity on its gate


def _gate_derivative(act: str, pre: np.ndarray) -> np.ndarray:
    if act == "silu":
        sig = 1.0 / (1.0 + np.exp(-pre))
        return sig * (1.0 + pre * (1.0 - sig))
    return activation_derivative(act, pre)


def gated_mlp_forward(params: dict, x: np.ndarray, act: str = "swiglu") -> tuple[np.ndarray, dict]:
    """out = (act(x W_gate + b_gate) * (x W_in + b_in)) W_out + b_out (SwiGLU: act = SiLU; GeGLU: GELU)."""
    if act not in GATES:
        raise InputError(f"unknown gated activation {act!r}; known: {', '.join(GATES)}")
    gate = ref.linear(x, params["W_gate"], params.get("b_gate"))  # [batch, pos, d_mlp]
    lin = ref.linear(x, params["W_in"], params.get("b_in"))  # [batch, pos, d_mlp]
    a = ref.GATES[act](gate)  # [batch, pos, d_mlp]
    h = a * lin
    out = ref.linear(h, params["W_out"], params.get("b_out"))  # [batch, pos, d_model]
    return out, dict(x=x, gate=gate, lin=lin, a=a, h=h, act=GATES[act])


def gated_mlp_backward(params: dict, tape: dict, d_out: np.ndarray) -> dict[str, np.ndarray]:
    """d_lin = dh act(gate),  d_gate = dh lin act'(gate),  dx = d_gate W_gate^T + d_lin W_in^T."""
    x, gate, lin, a, h = (tape[k] for k in ("x", "gate", "lin", "a", "h"))
    grads = {"W_out": np.einsum("bpm,bpd->md", h, d_out)}  # h^T d_out   [d_mlp, d_model]
    if params.get("b_out") is not None:
        grads["b_out"] = d_out.sum((0, 1))
    dh = d_out @ params["W_out"].T  # [batch, pos, d_mlp]
    d_lin = dh * a
    d_gate = dh * lin * _gate_derivative(tape["act"], gate)
    for name, d in (("gate", d_gate), ("in", d_lin)):
        grads[f"W_{name}"] = np.einsum("bpd,bpm->dm", x, d)  # x^T d   [d_model, d_mlp]
        if params.get(f"b_{name}") is not None:
            grads[f"b_{name}"] = d.sum((0, 1))
    grads["x"] = d_gate @ params["W_gate"].T + d_lin @ params["W_in"].T  # [batch, pos, d_model]
    return grads


def embedding_backward(tokens: np.ndarray, d_embed: np.ndarray, d_vocab: int) -> np.ndarray:
    """dW_E [d_vocab, d_model]: row t is the sum of d_embed [batch, pos, d_model] over the positions holding t."""
    dW_E = np.zeros((d_vocab, d_embed.shape[-1]))
    np.add.at(dW_E, tokens.reshape(-1), d_embed.reshape(-1, d_embed.shape[-1]))  # scatter-add
    return dW_E


def positions_backward(d_embed: np.ndarray, n_ctx: int) -> np.ndarray:
    """dW_pos [n_ctx, d_model]: row p is the sum over the batch of d_embed at position p."""
    dW_pos = np.zeros((n_ctx, d_embed.shape[-1]))
    dW_pos[: d_embed.shape[1]] = d_embed.sum(0)
    return dW_pos


def _check_heads(params: dict) -> None:
    missing = [k for k in ("W_Q", "W_K", "W_V", "W_O") if k not in params]
    if missing:
        raise InputError(f"attention parameters missing: {', '.join(missing)}")
    if params["W_Q"].shape[0] % params["W_K"].shape[0]:
        raise InputError(f"{params['W_Q'].shape[0]} query heads cannot be shared evenly by {params['W_K'].shape[0]} "
                         f"key/value heads")


# -- a whole model ----------------------------------------------------------------------------------------

MODEL_BACKWARD_COVERS = "decoder or encoder (tokens in, no qk_norm / embed_norm / MLM head / key padding)"


def model_backward(params: dict, config, tokens: np.ndarray, targets: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """(L, dL/dparam for every parameter, keyed by the model's names) for L = mean cross-entropy of the
    logits at every position against ``targets`` [batch, pos]; ``params`` as :func:`reference.params_of`.

    Forward through embeddings, blocks (Pre-LN: x + Sublayer(Norm(x)); Post-LN: Norm(x + Sublayer(x))),
    the final norm and the unembedding, keeping each piece's tape; then backward in reverse order, a
    residual addition sending its gradient both into the sublayer and past it."""
    c = config
    if c.arch not in ("decoder", "encoder") or c.input != "tokens" or c.qk_norm or c.embed_norm or c.unembed_transform \
            or c.positional not in ("learned", "sinusoidal", "none", "rope", "alibi") or (c.arch == "encoder" and c.n_classes):
        raise InputError(f"model_backward covers a {MODEL_BACKWARD_COVERS}; not this configuration")
    tokens, targets = np.asarray(tokens), np.asarray(targets)
    batch, n = tokens.shape
    positions = np.arange(n)
    rope = (int(c.d_head * c.rope_fraction), c.rope_base) if c.positional == "rope" else None
    bias = ref.alibi_bias(c.n_heads, positions, positions) if c.positional == "alibi" else None

    def sub(prefix: str) -> dict:
        return {k[len(prefix) + 1:]: v for k, v in params.items() if k.startswith(prefix + ".")}

    def norm_forward(name: str, x: np.ndarray):
        if c.norm == "none" or (name == "ln_final" and not c.final_norm):
            return x, None
        fwd = layer_norm_forward if c.norm == "layernorm" else rms_norm_forward
        return fwd(sub(name), x, c.norm_eps)

    def norm_backward(name: str, tape, dy: np.ndarray) -> np.ndarray:
        if tape is None:
            return dy
        g = (layer_norm_backward if c.norm == "layernorm" else rms_norm_backward)(sub(name), tape, dy)
        grads.update({f"{name}.{k}": v for k, v in g.items() if k != "x"})
        return g["x"]

    def sublayers(i: int) -> list[tuple[str, str]]:
        return [(f"blocks.{i}.attn", f"blocks.{i}.ln1")] + ([] if c.attn_only else [(f"blocks.{i}.mlp", f"blocks.{i}.ln2")])

    def sub_forward(name: str, h: np.ndarray):
        if name.endswith("attn"):
            return attention_forward(sub(name), h, scale=c.scale, causal=c.causal, rope=rope, bias=bias)
        if c.act in GATES:
            return gated_mlp_forward(sub(name), h, c.act)
        return mlp_forward(sub(name), h, c.act)

    def sub_backward(name: str, tape, d_out: np.ndarray) -> np.ndarray:
        backward = attention_backward if name.endswith("attn") else gated_mlp_backward if c.act in GATES else mlp_backward
        g = backward(sub(name), tape, d_out)
        grads.update({f"{name}.{k}": v for k, v in g.items() if k != "x"})
        return g["x"]

    # forward
    x = ref.embed(params["embed.W_E"], tokens)  # [batch, pos, d_model]
    if c.positional == "learned":
        x = x + ref.learned_positions(params["pos_embed.W_pos"], positions)
    elif c.positional == "sinusoidal":
        x = x + ref.sinusoidal_positions(positions, c.d_model)
    tapes = []
    for i in range(c.n_layers):
        for name, ln in sublayers(i):
            if c.norm_position == "pre":
                h, t_norm = norm_forward(ln, x)
                out, t_sub = sub_forward(name, h)
                x = x + out
            else:
                out, t_sub = sub_forward(name, x)
                x, t_norm = norm_forward(ln, x + out)
            tapes.append((name, ln, t_norm, t_sub))
    x_final, t_final = norm_forward("ln_final", x)  # [batch, pos, d_model]
    W_U = params["embed.W_E"].T if c.tie_embeddings else params["unembed.W_U"]  # [d_model, d_vocab]
    logits = ref.unembed(x_final, W_U, params.get("unembed.b_U"))  # [batch, pos, d_vocab]
    loss, d_logits = cross_entropy(logits.reshape(batch * n, -1), targets.reshape(-1))
    d_logits = d_logits.reshape(logits.shape)  # [batch, pos, d_vocab]

    # backward
    grads: dict[str, np.ndarray] = {}
    dW_U = np.einsum("bpd,bpv->dv", x_final, d_logits)  # x^T d_logits   [d_model, d_vocab]
    if "unembed.b_U" in params:
        grads["unembed.b_U"] = d_logits.sum((0, 1))
    dx = norm_backward("ln_final", t_final, d_logits @ W_U.T)  # [batch, pos, d_model]
    for name, ln, t_norm, t_sub in reversed(tapes):
        if c.norm_position == "pre":  # x + Sublayer(Norm(x)): the gradient passes by and through
            dx = dx + norm_backward(ln, t_norm, sub_backward(name, t_sub, dx))
        else:  # Norm(x + Sublayer(x)): first through the norm, then by and through
            ds = norm_backward(ln, t_norm, dx)
            dx = ds + sub_backward(name, t_sub, ds)
    grads["embed.W_E"] = embedding_backward(tokens, dx, params["embed.W_E"].shape[0])
    if c.tie_embeddings:
        grads["embed.W_E"] = grads["embed.W_E"] + dW_U.T
    else:
        grads["unembed.W_U"] = dW_U
    if c.positional == "learned":
        grads["pos_embed.W_pos"] = positions_backward(dx, params["pos_embed.W_pos"].shape[0])
    return loss, grads
