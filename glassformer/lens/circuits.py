"""Weight-space views of attention heads (Elhage et al. 2021, "A Mathematical Framework").

With residual vectors as rows (x is [d_model]), head h of a block computes

    scores[q, k] = x_q W_Q[h] W_K[h]^T x_k^T        QK circuit   W_QK = W_Q W_K^T        [d_model, d_model]
    output[q]    = sum_k A[q, k] x_k W_V[h] W_O[h]   OV circuit   W_OV = W_V W_O          [d_model, d_model]

(biases, the attention scale and the norms' gains aside; fold them in first with ``folding.py``).
Both are rank <= d_head, so they are kept *factored* as ``A @ B`` (:class:`FactoredMatrix`) and only
multiplied out when asked. Composition scores measure how much a later head reads what an earlier
head wrote, through its queries (Q), keys (K) or values (V):

    C_Q = ||W_OV^1 W_QK^2||_F / (||W_OV^1||_F ||W_QK^2||_F)
    C_K = ||W_QK^2 (W_OV^1)^T||_F / (...)          C_V = ||W_OV^1 W_OV^2||_F / (...)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.lens.cache import n_blocks, stack_module, stack_prefix


class FactoredMatrix:
    """The matrix ``A @ B`` stored as its factors: A [..., m, r], B [..., r, n] (leading dims batch heads)."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor):
        if A.dim() < 2 or B.dim() < 2 or A.shape[-1] != B.shape[-2]:
            raise InputError(f"FactoredMatrix needs A [..., m, r] and B [..., r, n], got {tuple(A.shape)} and {tuple(B.shape)}")
        self.A, self.B = A, B

    @property
    def shape(self) -> torch.Size:
        """[..., m, n]: the shape of A @ B."""
        lead = torch.broadcast_shapes(self.A.shape[:-2], self.B.shape[:-2])
        return torch.Size([*lead, self.A.shape[-2], self.B.shape[-1]])

    @property
    def AB(self) -> torch.Tensor:
        """The product, multiplied out: [..., m, n]."""
        return self.A @ self.B

    @property
    def T(self) -> FactoredMatrix:
        """(A B)^T = B^T A^T."""
        return FactoredMatrix(self.B.transpose(-1, -2), self.A.transpose(-1, -2))

    def __matmul__(self, other) -> FactoredMatrix:
        if isinstance(other, FactoredMatrix):
            return FactoredMatrix(self.A, (self.B @ other.A) @ other.B)
        return FactoredMatrix(self.A, self.B @ torch.as_tensor(other))

    def __rmatmul__(self, other) -> FactoredMatrix:
        return FactoredMatrix(torch.as_tensor(other) @ self.A, self.B)

    def __getitem__(self, index) -> FactoredMatrix:
        """Index the leading (head) dimensions: ``ov[3]`` is head 3's circuit."""
        lead = self.shape[:-2]
        A = self.A.expand(*lead, *self.A.shape[-2:])
        B = self.B.expand(*lead, *self.B.shape[-2:])
        return FactoredMatrix(A[index], B[index])

    def svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``U, S, V`` with A B = U diag(S) V^T, computed from the factors (QR of each, then the SVD of
        an r x r core), never from the m x n product. U [..., m, r], S [..., r], V [..., n, r]."""
        Qa, Ra = torch.linalg.qr(self.A.double())  # A = Qa Ra
        Qb, Rb = torch.linalg.qr(self.B.double().transpose(-1, -2))  # B^T = Qb Rb
        U, S, Vh = torch.linalg.svd(Ra @ Rb.transpose(-1, -2))  # the core Ra Rb^T  [..., r, r]
        dtype = self.A.dtype
        return (Qa @ U).to(dtype), S.to(dtype), (Qb @ Vh.transpose(-1, -2)).to(dtype)

    def norm(self) -> torch.Tensor:
        """Frobenius norm ||A B||_F = sqrt(sum of squared singular values): [...]."""
        return self.svd()[1].pow(2).sum(-1).sqrt()

    def eigenvalues(self) -> torch.Tensor:
        """The non-zero eigenvalues of a square A B, which are those of the small B A: [..., r] complex."""
        if self.A.shape[-2] != self.B.shape[-1]:
            raise InputError(f"eigenvalues need a square matrix, this one is {tuple(self.shape[-2:])}")
        return torch.linalg.eigvals(self.B @ self.A)

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={list(self.shape)}, inner_dim={self.A.shape[-1]})"


def _attention(model: nn.Module, layer: int, stack: str | None, cross: bool):
    p = stack_prefix(model, stack)
    n = n_blocks(model, p)
    if not isinstance(layer, int) or not 0 <= layer < n:
        raise InputError(f"layer must be an int in [0, {n}), got {layer!r}")
    block = stack_module(model, p).blocks[layer]
    attn = block.cross_attn if cross else block.attn
    if attn is None:
        raise InputError(f"block {layer} has no cross-attention")
    return attn


def _kv(attn, W: torch.Tensor) -> torch.Tensor:
    """Key/value weights per *query* head (grouped-query attention shares one kv head among several)."""
    return W.repeat_interleave(attn.n_heads // attn.n_kv_heads, dim=0)


def qk_circuit(model: nn.Module, layer: int, *, stack: str | None = None, cross: bool = False) -> FactoredMatrix:
    """W_QK[h] = W_Q[h] W_K[h]^T for every head of a block: [heads, d_model, d_model], factored."""
    attn = _attention(model, layer, stack, cross)
    return FactoredMatrix(attn.W_Q.detach(), _kv(attn, attn.W_K.detach()).transpose(-1, -2))


def ov_circuit(model: nn.Module, layer: int, *, stack: str | None = None, cross: bool = False) -> FactoredMatrix:
    """W_OV[h] = W_V[h] W_O[h] for every head of a block: [heads, d_model, d_model], factored."""
    attn = _attention(model, layer, stack, cross)
    return FactoredMatrix(_kv(attn, attn.W_V.detach()), attn.W_O.detach())


def full_ov_circuit(model: nn.Module, layer: int, *, stack: str | None = None) -> FactoredMatrix:
    """W_E W_OV[h] W_U: how attending to token i moves the logit of token j.  [heads, d_vocab, d_vocab_out]."""
    if stack_prefix(model, stack) == "encoder.":
        raise InputError("the full OV circuit reads out through W_U: use the main stack")
    return model.embed.W_E.detach() @ ov_circuit(model, layer) @ model.unembed.weight.detach()


def full_qk_circuit(model: nn.Module, layer: int, *, stack: str | None = None) -> FactoredMatrix:
    """W_E W_QK[h] W_E^T: the attention score between token embeddings.  [heads, d_vocab, d_vocab]."""
    W_E = stack_module(model, stack_prefix(model, stack)).embed.W_E.detach()
    return W_E @ qk_circuit(model, layer, stack=stack) @ W_E.T


COMPOSITIONS = ("q", "k", "v")


def composition_scores(model: nn.Module, kind: str = "k", *, stack: str | None = None) -> torch.Tensor:
    """Composition scores between every earlier head (l1, h1) and later head (l2, h2) of a stack:
    [layers, heads, layers, heads], NaN unless l1 < l2 (see the module docstring for the formulas)."""
    if kind not in COMPOSITIONS:
        raise InputError(f"composition kind must be one of {COMPOSITIONS}, got {kind!r}")
    n, h = n_blocks(model, stack_prefix(model, stack)), model.config.n_heads  # n_heads: the widest layer's
    scores = torch.full((n, h, n, h), float("nan"))  # NaN too where a narrower layer has no such head
    ov = [ov_circuit(model, l, stack=stack) for l in range(n)]
    qk = [qk_circuit(model, l, stack=stack) for l in range(n)]
    for l1 in range(n):
        for l2 in range(l1 + 1, n):
            writer = FactoredMatrix(ov[l1].A[:, None], ov[l1].B[:, None])  # [h1, 1, d, d]
            reader = ov[l2] if kind == "v" else qk[l2]  # [h2, d, d]
            if kind == "q":
                product = writer @ reader  # OV1 QK2
            elif kind == "k":
                product = reader @ writer.T  # QK2 OV1^T  (broadcasts to [h1, h2, d, d])
            else:
                product = writer @ reader  # OV1 OV2
            h1, h2 = ov[l1].shape[0], reader.shape[0]
            scores[l1, :h1, l2, :h2] = product.norm() / (writer.norm() * reader.norm()[None])
    return scores


@dataclass
class OVDirection:
    """One singular direction of a head's OV circuit, read through the embeddings and the unembedding."""

    singular_value: float
    input_tokens: list[int]  # tokens whose embedding points most along the input direction
    output_tokens: list[int]  # tokens whose logit the output direction raises most


def ov_svd(model: nn.Module, layer: int, head: int, *, k: int = 3, top: int = 5) -> list[OVDirection]:
    """The top ``k`` singular directions of W_OV = U S V^T of one head of the main stack: for each,
    the tokens that write along u_i (rows of W_E u_i) and the tokens v_i W_U promotes."""
    ov = ov_circuit(model, layer)
    if not 0 <= head < ov.shape[0]:
        raise InputError(f"head must be in [0, {ov.shape[0]}), got {head}")
    U, S, V = ov[head].svd()  # [d_model, r], [r], [d_model, r]
    reads = model.embed.W_E.detach() @ U  # [d_vocab, r]
    writes = V.T @ model.unembed.weight.detach()  # [r, d_vocab_out]
    return [
        OVDirection(float(S[i]), reads[:, i].topk(min(top, reads.shape[0])).indices.tolist(),
                    writes[i].topk(min(top, writes.shape[1])).indices.tolist())
        for i in range(min(k, S.shape[0]))
    ]


def copying_score(model: nn.Module, layer: int) -> torch.Tensor:
    """Per head, the fraction of tokens t whose own logit is the one attending to t raises most:
    mean_t [argmax_j (W_E W_OV W_U)[t, j] == t]. Near 1 for a copying head.  [heads]."""
    full = full_ov_circuit(model, layer).AB  # [heads, d_vocab, d_vocab_out]
    n = min(full.shape[-2], full.shape[-1])
    return (full[:, :n].argmax(-1) == torch.arange(n)).float().mean(-1)
