"""The computational graph that circuit methods score: senders, receivers, edges, and a forward pass in
which any edge can be patched.

For a model without norms (compiled RASP models, and models trained from them) the residual stream
is a plain sum, so every block reads the sum of the outputs of everything before it:

    resid_pre[L] = embed + sum_{l < L} (sum_h head_out[l, h] + mlp_out[l]) + biases
    head_out[L, h] = Attn_h(q_in = resid, k_in = resid, v_in = resid) W_O[h]        [batch, pos, d_model]

Senders write to the residual stream: ``embed``, each head ``a{L}.{h}``, each MLP ``m{L}``.
Receivers read it: each head's three inputs ``a{L}.{h}.q / .k / .v``, each MLP ``m{L}``, and ``logits``.
An edge (s, r) joins a sender to every receiver after it. Patching an edge gives the receiver the
*corrupt* run's output of s instead of the current run's (Wang et al. 2022 path patching; Conmy et al.
2023 ACDC):

    in_r = resid_r + sum_s P[s, r] (corrupt_s - current_s)          P: 0/1 or any weight

Node patching is every edge out of one sender. Rows of a batch may carry different patches, so a whole
sweep runs as a few batched forwards (``patch_sweep``). Biases (b_O, b_out) are constants, not senders.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from glassformer.circuits.errors import CircuitsError

ACTS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "relu2": lambda x: F.relu(x) ** 2}


@dataclass
class Run:
    """One forward pass: logits, every sender's output, and (if asked) every receiver's input."""

    logits: torch.Tensor  # [batch, pos, d_vocab_out]
    senders: torch.Tensor  # [batch, n_senders, pos, d_model]
    inputs: list[torch.Tensor] | None = None  # receiver inputs in receiver order, in blocks [batch, k, pos, d_model]

    def input_grads(self) -> torch.Tensor:
        """After ``backward``: d metric / d (each receiver's input), [batch, n_receivers, pos, d_model]."""
        return torch.cat([x.grad for x in self.inputs], dim=1)


class CircuitGraph:
    """Senders, receivers and edges of a norm-free ``Transformer``, with a patchable forward pass."""

    def __init__(self, model):
        c = model.config
        problems = []
        if c.arch not in ("encoder", "decoder"):
            problems.append(f"arch={c.arch!r} (need encoder or decoder)")
        if c.norm != "none":
            problems.append(f"norm={c.norm!r} (the residual stream must be a plain sum: norm='none')")
        if c.positional not in ("learned", "none"):
            problems.append(f"positional={c.positional!r} (need learned or none)")
        if c.attention != "full" or c.act not in ACTS or c.attn_only or c.n_kv_heads not in (None, c.n_heads):
            problems.append("attention must be full softmax, one kv head per head, and a plain MLP (relu/gelu)")
        if c.qk_norm or c.embed_norm or c.unembed_transform or c.input != "tokens" or c.n_classes:
            problems.append("no qk_norm, embedding norm, unembed transform, patch inputs or classifier head")
        if problems:
            raise CircuitsError("circuit methods need a model whose residual stream is a sum of its parts: "
                                + "; ".join(problems))
        self.model, self.config = model, c
        self.n_layers, self.n_heads = c.n_layers, c.n_heads  # n_heads: the widest layer's
        self.heads = [block.attn.n_heads for block in model.blocks]  # per layer (ModelConfig.layer_n_heads)
        self.act = ACTS[c.act]
        self.senders = ["embed"]
        self.receivers: list[str] = []
        self.sender_layer = {"embed": -1}
        for L in range(self.n_layers):
            for h in range(self.heads[L]):
                self.receivers += [f"a{L}.{h}.q", f"a{L}.{h}.k", f"a{L}.{h}.v"]
            for h in range(self.heads[L]):
                self.senders.append(f"a{L}.{h}")
            self.receivers.append(f"m{L}")
            self.senders.append(f"m{L}")
        self.receivers.append("logits")
        self.s_index = {s: i for i, s in enumerate(self.senders)}
        self.r_index = {r: i for i, r in enumerate(self.receivers)}
        # how many senders precede each receiver (its possible inputs are senders[:n_before])
        self.n_before = torch.tensor([self._before(r) for r in self.receivers])
        self.edges = [(s, r) for r in self.receivers for s in self.senders[: self._before(r)]]
        self.nodes = self.senders[1:]  # heads and MLPs (the candidates of a node-level method)

    def _before(self, receiver: str) -> int:
        if receiver == "logits":
            return len(self.senders)
        L = int(receiver[1:].split(".")[0])
        attn = receiver.startswith("a")
        return 1 + sum(h + 1 for h in self.heads[:L]) + (0 if attn else self.heads[L])

    # -- the forward pass ----------------------------------------------------------------------------

    def forward(self, tokens: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                corrupt: torch.Tensor | None = None, patch: torch.Tensor | None = None,
                rows: torch.Tensor | None = None, embed: torch.Tensor | None = None, keep_inputs: bool = False) -> Run:
        """Run ``tokens`` [batch, pos] (``attention_mask`` [batch, pos]: 1 = real token, 0 = padding).

        Two ways to patch in ``corrupt`` (a run's ``senders`` [batch, n_senders, pos, d_model]):
        ``patch`` P [batch or 1, n_senders, n_receivers] weights every edge (any mix); ``rows`` [batch, 2]
        patches one edge per row, (sender, receiver) indices, receiver -1 = every edge out of the sender
        (a node), sender -1 = nothing. ``embed`` replaces the embedding output (EAP-IG interpolates it).
        ``keep_inputs`` keeps every receiver input with its gradient retained (``Run.input_grads``)."""
        m, c = self.model, self.config
        n_pos = tokens.shape[1]
        pos = torch.arange(n_pos, device=tokens.device)
        if embed is None:
            embed = m.embed.W_E[tokens]  # [batch, pos, d_model]
            if m.pos_embed is not None:
                embed = embed + m.pos_embed.W_pos[pos]
        if keep_inputs and not embed.requires_grad:
            embed = embed.detach().requires_grad_(True)  # so every receiver input is part of the autograd graph
        outs = [embed]  # sender outputs so far, each [batch, pos, d_model]
        if rows is not None:
            rows_s, rows_r = rows[:, 0], rows[:, 1]
            outs[0] = self._patch_nodes(outs, 0, corrupt, rows_s, rows_r)
        resid = outs[0]
        inputs: list[torch.Tensor] = []
        mask = torch.ones(n_pos, n_pos, dtype=torch.bool, device=tokens.device).tril() if c.causal else None
        if attention_mask is not None:  # [batch, 1, 1, k_pos]
            keys = attention_mask.bool()[:, None, None, :]
            mask = keys if mask is None else keys & mask

        def read(names: list[str]) -> torch.Tensor:
            """The inputs of these receivers: [batch, len(names), pos, d_model]."""
            x = resid[:, None].expand(-1, len(names), -1, -1)
            first = self.r_index[names[0]]
            if patch is not None:
                n = len(outs)
                delta = corrupt[:, :n] - torch.stack(outs, 1)  # [batch, n, pos, d_model]
                w = patch[:, :n, first: first + len(names)].to(delta.dtype)  # [batch or 1, n, len(names)]
                x = x + torch.einsum("bsr,bspd->brpd", w, delta)
            if rows is not None:
                hit = (rows_s >= 0) & (rows_r >= first) & (rows_r < first + len(names))
                if hit.any():
                    x = x.clone()
                    for s in rows_s[hit].unique().tolist():
                        i = (hit & (rows_s == s)).nonzero()[:, 0]  # the rows patching an edge out of s here
                        x[i, rows_r[i] - first] += corrupt[i, s] - outs[s][i]
            if keep_inputs:
                x = x.clone()
                x.retain_grad()
                inputs.append(x)
            return x

        for L, block in enumerate(m.blocks):
            a = block.attn
            H = a.n_heads
            x = read([f"a{L}.{h}.{w}" for h in range(H) for w in "qkv"])  # [batch, 3H, pos, d_model]
            x = x.reshape(x.shape[0], H, 3, *x.shape[2:])
            q = torch.einsum("bhpd,hde->bhpe", x[:, :, 0], a.W_Q)  # [batch, heads, pos, d_head]
            k = torch.einsum("bhpd,hde->bhpe", x[:, :, 1], a.W_K)
            v = torch.einsum("bhpd,hde->bhpe", x[:, :, 2], a.W_V)
            if a.b_Q is not None:
                q, k, v = q + a.b_Q[:, None], k + a.b_K[:, None], v + a.b_V[:, None]
            scores = torch.einsum("bhqe,bhke->bhqk", q, k) * a.scale  # [batch, heads, q_pos, k_pos]
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            pattern = scores.softmax(-1)
            z = torch.einsum("bhqk,bhke->bhqe", pattern, v)  # [batch, heads, pos, d_head]
            head_out = torch.einsum("bhpe,hed->bhpd", z, a.W_O)  # [batch, heads, pos, d_model]
            for h in range(H):
                outs.append(head_out[:, h])
                if rows is not None:
                    outs[-1] = self._patch_nodes(outs, len(outs) - 1, corrupt, rows_s, rows_r)
            resid = resid + sum(outs[-H:]) + (a.b_O if a.b_O is not None else 0)
            mlp = block.mlp
            x = read([f"m{L}"])[:, 0]  # [batch, pos, d_model]
            pre = x @ mlp.W_in + (mlp.b_in if mlp.b_in is not None else 0)  # [batch, pos, d_mlp]
            outs.append(self.act(pre) @ mlp.W_out)  # [batch, pos, d_model]
            if rows is not None:
                outs[-1] = self._patch_nodes(outs, len(outs) - 1, corrupt, rows_s, rows_r)
            resid = resid + outs[-1] + (mlp.b_out if mlp.b_out is not None else 0)
        x = read(["logits"])[:, 0]
        logits = m.unembed(x)  # [batch, pos, d_vocab_out]
        return Run(logits, torch.stack(outs, 1), inputs if keep_inputs else None)

    @staticmethod
    def _patch_nodes(outs, s: int, corrupt, rows_s, rows_r) -> torch.Tensor:
        """Sender ``s``'s output with the rows that patch the whole node taken from ``corrupt``."""
        hit = (rows_s == s) & (rows_r < 0)
        if not hit.any():
            return outs[s]
        return torch.where(hit[:, None, None], corrupt[:, s], outs[s])

    # -- patches -------------------------------------------------------------------------------------

    def allowed(self) -> torch.Tensor:
        """[n_senders, n_receivers] bool: which sender may feed which receiver."""
        s = torch.arange(len(self.senders))[:, None]
        return s < self.n_before[None, :]

    def node_patch(self, sender: str) -> torch.Tensor:
        """P [n_senders, n_receivers] patching every edge out of ``sender``."""
        p = torch.zeros(len(self.senders), len(self.receivers))
        p[self.s_index[sender]] = self.allowed()[self.s_index[sender]].float()
        return p

    def edge_patch(self, sender: str, receiver: str) -> torch.Tensor:
        p = torch.zeros(len(self.senders), len(self.receivers))
        p[self.s_index[sender], self.r_index[receiver]] = 1.0
        return p

    def node_row(self, sender: str) -> tuple[int, int]:
        """A ``rows`` entry patching every edge out of ``sender``."""
        return (self.s_index[sender], -1)

    def edge_row(self, sender: str, receiver: str) -> tuple[int, int]:
        return (self.s_index[sender], self.r_index[receiver])

    def receiver_of(self, name: str) -> str:
        """The node a receiver belongs to: 'a1.0.q' -> 'a1.0', 'm2' -> 'm2', 'logits' -> 'logits'."""
        return name.rsplit(".", 1)[0] if name.count(".") == 2 else name
