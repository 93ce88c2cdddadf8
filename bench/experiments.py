"""Local experiments behind the proposed changes to glassformer/model/ (reported in bench/README.md).

The benchmarks do not edit the model (another engineer owns it). Each change is tried here on one model
*instance* (instance attributes; other models are untouched), checked to compute the same logits, and
timed side by side with the model as is:

* ``matmul_projections``: the per-head projections ``x W[h]`` (``einsum("bpd,hde->bphe")``) and the output
  ``sum_h z_h W_O[h]`` (``einsum("bqhe,hed->bqd")``) as plain batched matmuls. On CPU, einsum spends far
  more than the matmul itself on small inputs (it permutes and copies the weight: measured ~0.5 ms per call
  at one token, vs ~10-40 us for the matmul), which dominates a KV-cache decode step; at training sizes it
  is ~25% slower for the projections.
* ``without_host_syncs``: no min/max of the token ids read back to the host in ``_check_tokens``
  (``bool(lo < 0 or hi >= d_vocab)``): a device sync at the top of every forward on a GPU, and a
  torch.compile graph break. (The same problem inside attention, ``int(positions[-1])`` in the block loop,
  which made dynamo skip the whole loop, has since been fixed in the model, e8047f5.)

The patched ``Attention.forward`` below is a copy of the model's at the time of writing with only the
projection lines changed; :func:`patch` refuses to apply it if the logits no longer match (the model moved on).
"""

from __future__ import annotations

import types

import torch

from glassformer import Transformer


def project_heads(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x W[h] + b[h] for every head h as one batched matmul over heads, W used in place:
    [batch, pos, d_model] x [heads, d_model, d_head] -> [batch, pos, heads, d_head]."""
    batch, pos, d_model = x.shape
    out = torch.matmul(x.reshape(1, batch * pos, d_model), W)  # [heads, batch*pos, d_head]
    out = out.transpose(0, 1).reshape(batch, pos, W.shape[0], W.shape[2])  # [batch, pos, heads, d_head]
    return out + b if b is not None else out


def combine_heads(z: torch.Tensor, W_O: torch.Tensor) -> torch.Tensor:
    """sum_h z_h W_O[h] = Concat(z_h) W^O: [batch, q_pos, heads, d_head] x [heads, d_head, d_model] -> [batch, q_pos, d_model]."""
    batch, q_pos, heads, d_head = z.shape
    return z.reshape(batch, q_pos, heads * d_head) @ W_O.reshape(heads * d_head, W_O.shape[2])


def _attention_forward(self, x, memory=None, *, positions, key_padding=None, cache=None, prefix=None):
    """``Attention.forward`` (copied) with the projections done by :func:`project_heads` and :func:`combine_heads`."""
    q = self.q(project_heads(x, self.W_Q, self.b_Q))  # [batch, q_pos, heads, d_head]
    if self.q_norm is not None:
        q = self.q_norm(q)
    if self.rotary is not None:
        q = self.rotary(q, positions)
    if self.cross:
        z = self._cross_attend(q, memory, positions, key_padding, cache)
    else:
        y = x if prefix is None else torch.cat([prefix, x], dim=1)  # [batch, k_pos, d_model]
        k_positions = positions[-1] + 1 - y.shape[1] + torch.arange(y.shape[1], device=x.device)  # end at the last query
        k = self.k(project_heads(y, self.W_K, self.b_K))  # [batch, k_pos, kv_heads, d_head]
        v = self.v(project_heads(y, self.W_V, self.b_V))
        if self.k_norm is not None:
            k = self.k_norm(k)
        if self.rotary is not None:
            k = self.rotary(k, k_positions)
        z = self.attend(q, k, v, q_positions=positions, k_positions=k_positions, key_padding=key_padding, cache=cache)
    z = self.z(z)  # [batch, q_pos, heads, d_head]
    out = combine_heads(z, self.W_O)  # [batch, q_pos, d_model]
    return out + self.b_O if self.b_O is not None else out


def patch(model: Transformer, *, matmul_projections: bool = False, without_host_syncs: bool = False) -> Transformer:
    """Apply the chosen experiments to ``model`` (in place) after checking they keep its logits."""
    device = next(model.parameters()).device
    probe = torch.randint(0, model.config.d_vocab, (2, min(8, model.config.n_ctx)), device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        reference = model(probe)  # [2, pos, d_vocab_out]
    if without_host_syncs:
        original_check = model._check_tokens

        def check(tokens, what, offset=0):
            return tokens if tokens.dim() == 2 and tokens.dtype == torch.long else original_check(tokens, what, offset)

        model._check_tokens = check
    if matmul_projections:
        for block in model.blocks:
            block.attn.forward = types.MethodType(_attention_forward, block.attn)
    with torch.no_grad():
        if not torch.allclose(model(probe), reference, atol=1e-5, rtol=1e-4):
            raise RuntimeError("the patched attention no longer matches glassformer/model/attention.py: update bench/experiments.py")
    model.train(was_training)
    return model
