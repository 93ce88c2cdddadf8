"""Sampling and beam search: turning next-token logits into sequences.

At each step the model gives logits l over the vocabulary for the next token; then

    greedy:       next = argmax_i l_i
    temperature:  p = softmax(l / T)              (T < 1 sharpens, T > 1 flattens)
    top-k:        keep the k largest l_i, set the rest to -inf, then sample
    top-p:        keep the smallest set of tokens whose probability sums to >= p ("nucleus"), then sample

With the KV cache (``use_cache=True``) the prompt is run once and every later step feeds only the
newest token, reusing the keys and values of earlier positions; the logits are the same as
re-running the whole prefix (a test checks this), only cheaper.

Past the context (a sequence longer than ``n_ctx``) the two kinds of position differ:

* relative positions (RoPE, ALiBi, T5 bias, or none; full or sliding-window attention): the cache **rolls**,
  keeping the last ``n_ctx - 1`` keys and values, and decoding goes on one token per step. Each key keeps the
  value it got when its token was made, so this is exactly a model with sliding-window attention of width
  ``n_ctx`` run on the whole sequence (a test checks this), as Transformer-XL and Mistral's rolling buffer do;
* absolute positions (learned, sinusoidal; and the sparse / linear patterns): there is no position past
  ``n_ctx`` to give a new token, so every step re-runs the last ``n_ctx`` tokens from scratch, without a cache.

Beam search keeps the ``beam_size`` highest-scoring partial outputs, score = sum of token
log-probabilities, and returns the best finished one after dividing by length ** length_penalty.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from glassformer.errors import InputError
from glassformer.model.attention import fused_qkv
from glassformer.model.decode import LeanDecoder, hooks_attached, lean_decoding_unsupported


def _check_tokens(model, tokens: torch.Tensor, name: str = "tokens") -> None:
    if not torch.is_tensor(tokens) or tokens.dtype != torch.long or tokens.ndim != 2:
        raise InputError(f"{name} must be a LongTensor [batch, pos], got {getattr(tokens, 'shape', type(tokens))}")
    if tokens.shape[1] == 0:
        raise InputError(f"{name} must hold at least one token per row (a prompt or a start token)")


class _Stepper:
    """Runs a model one step at a time, with or without the KV cache, and returns the last logits.

    Without the cache every call re-runs the whole (cropped to ``n_ctx``) sequence. With it, the
    first call runs the prompt and later calls only the new token; past ``n_ctx`` positions the cache rolls
    (relative positions, :func:`rolls_past_context`) or the stepper falls back to the uncached, cropped
    computation (absolute positions).
    """

    def __init__(self, model, use_cache: bool, src=None, src_attention_mask=None, attention_mask=None):
        self.model, self.use_cache = model, use_cache
        self.attention_mask = attention_mask  # [batch, pos]: the prompt's, 1 = real token (left padding)
        self.n_ctx = model.config.n_ctx
        self.encoder_decoder = model.config.arch == "encoder-decoder"
        self.src_attention_mask = src_attention_mask
        self.memory = None
        if self.encoder_decoder:
            if src is None:
                raise InputError("an encoder-decoder model needs src= (the encoder input) to generate")
            _check_tokens(model, src, "src")
            self.memory = model.encode(src, src_attention_mask)  # [batch, src_pos, d_model]
        self.cache = model.new_cache() if use_cache else None
        self.rolls = use_cache and rolls_past_context(model.config)
        self.fed = 0  # how many tokens of the sequence the cache holds
        self.lean = None  # the lean step (decode.py): a plain decoder, no hook attached, no padding
        self.lean_ok = (use_cache and attention_mask is None and lean_decoding_unsupported(model) is None
                        and not hooks_attached(model))

    def _run(self, tokens: torch.Tensor, cache, start: int) -> torch.Tensor:
        """The model on ``tokens`` = positions start.. of the sequence (the cache holding those before)."""
        kwargs = {}
        if self.attention_mask is not None:  # left-padded prompts: mask the padding, count positions from each row's start
            mask = self.attention_mask[:, : start + tokens.shape[1]]  # [batch, fed + new]: all positions the keys cover
            if cache is None:
                mask = mask[:, start:]
            kwargs = {"attention_mask": mask}
            if self.model.pos_embed is not None:  # an additive position embedding: count from each row's first token
                kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)[:, -tokens.shape[1] :]  # [batch, new]
        if self.encoder_decoder:
            return self.model(tokens, memory=self.memory, src_attention_mask=self.src_attention_mask, cache=cache, **kwargs)
        return self.model(tokens, cache=cache, **kwargs)

    def __call__(self, sequence: torch.Tensor) -> torch.Tensor:
        """Logits for the token after ``sequence`` [batch, pos]: [batch, d_vocab_out] (float32)."""
        if self.attention_mask is not None and self.attention_mask.shape[1] < sequence.shape[1]:  # generated tokens are real
            grow = sequence.shape[1] - self.attention_mask.shape[1]
            self.attention_mask = torch.cat([self.attention_mask, self.attention_mask.new_ones(sequence.shape[0], grow)], dim=1)
        if self.lean_ok and (sequence.shape[1] <= self.n_ctx or (self.rolls and self.lean is not None)):
            if self.lean is None:  # the prompt (it fits n_ctx), then one token per step
                self.lean = LeanDecoder(self.model, sequence.shape[0])
            logits = self.lean.step(sequence[:, self.lean.seen :])  # [batch, d_vocab_out]
            return logits.float()
        if self.cache is not None and (sequence.shape[1] <= self.n_ctx or self.rolls):
            if self.fed == 0 and sequence.shape[1] > self.n_ctx:  # a prompt longer than the context: its last n_ctx tokens
                self.fed = sequence.shape[1] - self.n_ctx
            new = sequence.shape[1] - self.fed
            if sequence.shape[1] > self.n_ctx:  # rolling: the new tokens and the kept keys make n_ctx positions
                for layer in self.cache.layers:
                    layer.keep_last(self.n_ctx - new)
            logits = self._run(sequence[:, self.fed :], self.cache, self.fed)  # [batch, new, d_vocab_out]
            self.fed = sequence.shape[1]
        else:
            start = max(0, sequence.shape[1] - self.n_ctx)
            logits = self._run(sequence[:, start:], None, start)  # [batch, pos, d_vocab_out]
        return logits[:, -1, :].float()

    def reorder(self, index: torch.Tensor) -> None:
        """Follow the rows ``index`` (beam search)."""
        if self.cache is not None:
            self.cache.reorder(index)
        if self.lean is not None:
            self.lean.reorder(index)
        if self.memory is not None:
            self.memory = self.memory.index_select(0, index)
            if self.src_attention_mask is not None:
                self.src_attention_mask = self.src_attention_mask.index_select(0, index)


def rolls_past_context(config) -> bool:
    """Whether decoding past ``n_ctx`` keeps a rolling KV cache (relative positions, full or sliding attention,
    no Transformer-XL memory) instead of re-running the last ``n_ctx`` tokens (absolute positions)."""
    return (config.positional in ("rope", "alibi", "t5", "none") and config.attention in ("full", "sliding")
            and not config.memory_len)


def filter_logits(logits: torch.Tensor, *, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set every logit outside the top-k and outside the top-p nucleus to -inf.  [batch, vocab]"""
    if top_k is not None:
        if top_k < 1:
            raise InputError(f"top_k must be >= 1, got {top_k}")
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # [batch, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise InputError(f"top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # [batch, vocab]
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # drop a token if the tokens before it already reach top_p (the first token is always kept)
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(
    logits: torch.Tensor,
    *,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token of each row from logits [batch, vocab] -> [batch]."""
    if greedy or temperature == 0:
        return logits.argmax(dim=-1)
    if temperature < 0:
        raise InputError(f"temperature must be >= 0, got {temperature}")
    logits = filter_logits(logits / temperature, top_k=top_k, top_p=top_p)
    probs = torch.softmax(logits, dim=-1)  # [batch, vocab]
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model,
    tokens: torch.Tensor,
    max_new_tokens: int,
    *,
    src: torch.Tensor | None = None,
    src_attention_mask: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_tokens: int | list[int] | tuple[int, ...] | None = None,
    pad_token: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend ``tokens`` [batch, pos] by up to ``max_new_tokens`` tokens -> [batch, pos + new].

    Decoders continue the prompt ``tokens``. Encoder-decoders read ``src`` [batch, src_pos] with the
    encoder and continue the decoder prefix ``tokens`` (e.g. a start token). A row that emits one of
    ``stop_tokens`` is finished: later positions get ``pad_token`` (default: the first stop token);
    generation ends early once every row is finished. ``generator`` makes sampling reproducible.

    Prompts of different lengths go in one batch left-padded, with ``attention_mask`` [batch, pos] (1 = real
    token, 0 = padding; :func:`left_pad` makes both): padding is masked and each row's positions count from
    its first real token, so every row continues as it would alone (while the sequence fits in n_ctx).
    """
    _check_tokens(model, tokens)
    if attention_mask is not None:
        _check_left_padding(model, tokens, attention_mask)
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    stops = _as_token_list(stop_tokens)
    pad = pad_token if pad_token is not None else (stops[0] if stops else 0)
    with _decoding(model):
        step = _Stepper(model, use_cache, src, src_attention_mask, attention_mask)
        batch, length = tokens.shape
        out = tokens.new_empty(batch, length + max_new_tokens)  # [batch, pos + new]: filled in step by step
        out[:, :length] = tokens
        finished = torch.zeros(batch, dtype=torch.bool, device=tokens.device)  # [batch]
        stop_ids = torch.tensor(stops, device=tokens.device)
        for _ in range(max_new_tokens):
            logits = step(out[:, :length])  # [batch, d_vocab_out]
            new = next_token(logits, greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
            if stops:
                new = new.masked_fill(finished, pad)  # [batch]: a finished row only pads
                finished |= torch.isin(new, stop_ids)
            out[:, length] = new
            length += 1
            if stops and bool(finished.all()):
                break
    return out[:, :length].contiguous()


@torch.no_grad()
def beam_search(
    model,
    src: torch.Tensor | None,
    tokens: torch.Tensor,
    max_new_tokens: int,
    *,
    beam_size: int = 4,
    stop_tokens: int | list[int] | tuple[int, ...] | None = None,
    pad_token: int | None = None,
    length_penalty: float = 1.0,
    src_attention_mask: torch.Tensor | None = None,
    use_cache: bool = True,
    return_scores: bool = False,
):
    """The most probable continuation of ``tokens`` [batch, pos] that beam search finds.

    For an encoder-decoder, ``src`` [batch, src_pos] is the encoder input and ``tokens`` the decoder
    prefix; for a decoder pass ``src=None``. Each row keeps ``beam_size`` hypotheses; a hypothesis
    that emits a stop token is finished and keeps its score. The winner maximises
    ``sum(log p) / n_new ** length_penalty``. Returns [batch, pos + new] (finished rows padded with
    ``pad_token``), and the winners' scores [batch] if ``return_scores``.
    """
    _check_tokens(model, tokens)
    if beam_size < 1:
        raise InputError(f"beam_size must be >= 1, got {beam_size}")
    stops = _as_token_list(stop_tokens)
    pad = pad_token if pad_token is not None else (stops[0] if stops else 0)
    batch, device = tokens.shape[0], tokens.device
    rows = torch.arange(batch, device=device).repeat_interleave(beam_size)  # [batch * beam]
    with _decoding(model):
        step = _Stepper(
            model,
            use_cache,
            None if src is None else src[rows],
            None if src_attention_mask is None else src_attention_mask[rows],
        )
        sequences = tokens[rows]  # [batch * beam, pos]
        scores = torch.full((batch, beam_size), float("-inf"), device=device)  # [batch, beam]
        scores[:, 0] = 0.0  # all beams start identical: keep one so the first step yields distinct ones
        finished = torch.zeros(batch, beam_size, dtype=torch.bool, device=device)
        lengths = torch.zeros(batch, beam_size, device=device)  # new tokens up to and including the stop
        for _ in range(max_new_tokens):
            log_probs = torch.log_softmax(step(sequences), dim=-1)  # [batch * beam, vocab]
            vocab = log_probs.shape[-1]
            log_probs = log_probs.view(batch, beam_size, vocab)
            # a finished hypothesis can only continue with pad, at no cost
            pad_only = torch.full((vocab,), float("-inf"), device=device)
            pad_only[pad] = 0.0
            log_probs = torch.where(finished[..., None], pad_only, log_probs)
            candidates = (scores[..., None] + log_probs).view(batch, beam_size * vocab)
            scores, flat = torch.topk(candidates, beam_size, dim=-1)  # [batch, beam]
            beam, token = flat // vocab, flat % vocab  # [batch, beam]
            index = (torch.arange(batch, device=device)[:, None] * beam_size + beam).view(-1)  # [batch * beam]
            step.reorder(index)
            sequences = torch.cat([sequences[index], token.view(-1, 1)], dim=1)
            finished, lengths = finished.gather(1, beam), lengths.gather(1, beam)
            lengths = lengths + (~finished).float()
            if stops:
                finished = finished | torch.isin(token, torch.tensor(stops, device=device))
                if bool(finished.all()):
                    break
        normalised = scores / lengths.clamp(min=1.0) ** length_penalty  # [batch, beam]
        best = normalised.argmax(dim=-1)  # [batch]
        winners = sequences.view(batch, beam_size, -1)[torch.arange(batch, device=device), best]
    if return_scores:
        return winners, scores[torch.arange(batch, device=device), best]
    return winners


@contextlib.contextmanager
def _decoding(model) -> Iterator[None]:
    """For one decoding loop: eval mode (no dropout) and q, k, v projected with one fused matmul (the
    weights cannot change while it runs); the model's training mode comes back afterwards."""
    was_training = model.training
    model.eval()
    try:
        with fused_qkv(model):
            yield
    finally:
        model.train(was_training)


def left_pad(sequences: list[list[int]] | list[torch.Tensor], pad_token: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths as one batch for :func:`generate`: (tokens, attention_mask), both
    [batch, longest], each row right-aligned after ``pad_token``s (mask 0) so all rows end at the last column."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise InputError("left_pad needs at least one sequence, and no empty ones")
    longest = max(len(s) for s in sequences)
    tokens = torch.full((len(sequences), longest), pad_token, dtype=torch.long)
    mask = torch.zeros(len(sequences), longest, dtype=torch.long)
    for row, seq in enumerate(sequences):
        tokens[row, longest - len(seq) :] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, longest - len(seq) :] = 1
    return tokens, mask


def unpad(tokens: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    """The rows of a left-padded batch without their padding: ``tokens`` [batch, pos] as returned by
    ``generate(prompts, n, attention_mask=mask)`` (pos may exceed the mask's width: the generated columns are
    all real), so that a row decodes to its prompt and continuation, never to the pad token (which is an
    ordinary token, e.g. the letter 'a', in a task's vocabulary)."""
    n_pad = (attention_mask.shape[1] - attention_mask.sum(dim=1)).tolist()  # [batch] pad columns per row
    return [row[int(k):].tolist() for row, k in zip(tokens, n_pad)]


def _check_left_padding(model, tokens: torch.Tensor, attention_mask: torch.Tensor) -> None:
    c = model.config
    if c.memory_len or (c.attention == "sparse" and c.sparse_pattern == "fixed"):
        what = "a Transformer-XL memory" if c.memory_len else "sparse_pattern='fixed' (blocks at absolute positions)"
        raise InputError(f"generate(attention_mask=...) shifts left-padded rows, which {what} does not allow: "
                         "generate rows of different lengths one at a time")
    if not torch.is_tensor(attention_mask) or attention_mask.shape != tokens.shape:
        raise InputError(f"attention_mask must be a tensor of the prompt's shape {tuple(tokens.shape)}, "
                         f"got {tuple(getattr(attention_mask, 'shape', ())) or type(attention_mask).__name__}")
    real = attention_mask.bool()
    if not bool(real[:, -1].all()) or bool((real[:, :-1] & ~real[:, 1:]).any()):
        raise InputError("generate needs left-padded prompts: in each row of attention_mask the 0s (padding) must "
                         "come before the 1s, and the last column must be 1 (glassformer.model.generate.left_pad)")


def _as_token_list(stop_tokens) -> list[int]:
    if stop_tokens is None:
        return []
    if isinstance(stop_tokens, int):
        return [stop_tokens]
    return [int(t) for t in stop_tokens]
