"""`Transformer`: one class for the decoder (GPT), the encoder (BERT) and the encoder-decoder (2017 paper).

    resid_0   = W_E[tokens] + W_pos[positions]           embed + pos_embed      [batch, pos, d_model]
    resid_l+1 = Block_l(resid_l)                          l = 0 .. n_layers - 1
    logits    = Norm_final(resid_L) W_U + b_U                                    [batch, pos, d_vocab_out]

An encoder-decoder runs an encoder stack (bidirectional blocks) over the source first; its output
(``memory``) is what every decoder block's cross-attention reads.

Variants (docs/variants.md): a vision transformer (``input="patches"``) replaces W_E by a patch
embedding and a class token (``vision.py``) and returns class logits; a Transformer-XL decoder
(``memory_len > 0``) takes a ``segment_memory`` (``segment_memory.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.model.block import Block, make_dropout
from glassformer.model.config import ModelConfig
from glassformer.model.embed import Embed, Unembed, UnembedTransform, make_positional
from glassformer.model.forward_options import check_forward_options, check_residual, cross_entropy_loss, layer_index
from glassformer.model.hooks import HookedMixin, HookPoint
from glassformer.model.init import weight
from glassformer.model.kv_cache import KVCache
from glassformer.model.norms import NoNorm, make_norm
from glassformer.model.segment_memory import SegmentMemory
from glassformer.model.tokens import TokenizerMixin
from glassformer.model.vision import PatchEmbed


class Encoder(nn.Module):
    """The encoder stack of an encoder-decoder: its own embeddings, bidirectional blocks, a final norm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed = Embed(config.d_vocab, config.d_model, config.init_std)
        self.pos_embed = make_positional(config)
        self.ln_embed = make_norm(config) if config.embed_norm else None
        self.drop = make_dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, causal=False) for _ in range(config.n_layers))
        self.ln_final = make_norm(config) if config.final_norm else NoNorm(config.d_model)

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.drop(embed_tokens(self, tokens, positions))  # [batch, src_pos, d_model]
        for block in self.blocks:
            x = block(x, positions=positions, attention_mask=attention_mask)
        return self.ln_final(x)  # memory: [batch, src_pos, d_model]


def embed_tokens(stack: nn.Module, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """resid_0 = W_E[tokens] (+ W_pos[positions] for additive positional schemes),
    then Norm_embed(resid_0) when ``embed_norm`` is set (BERT's embedding LayerNorm)."""
    x = stack.embed(tokens)  # [batch, pos, d_model]
    x = x + stack.pos_embed(positions).to(x.dtype) if stack.pos_embed is not None else x
    return stack.ln_embed(x) if stack.ln_embed is not None else x  # [batch, pos, d_model]


class Transformer(TokenizerMixin, HookedMixin, nn.Module):
    """A transformer built from a :class:`ModelConfig`; every intermediate has a named hook point.
    ``model.tokenizer`` (set by the loaders) turns text into ids: ``to_tokens`` / ``to_str_tokens`` / ``to_string``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        encoder_decoder = config.arch == "encoder-decoder"
        self.encoder = Encoder(config) if encoder_decoder else None
        vision = config.input == "patches"
        self.embed = PatchEmbed(config) if vision else Embed(config.d_vocab, config.d_model, config.init_std)
        self.pos_embed = make_positional(config)
        self.ln_embed = make_norm(config) if config.embed_norm else None
        self.drop = make_dropout(config.dropout)
        n_blocks = config.n_decoder_layers if encoder_decoder else config.n_layers
        self.blocks = nn.ModuleList(
            Block(config.layer_config(i), causal=config.causal, cross_attention=encoder_decoder) for i in range(n_blocks)
        )
        self.ln_final = make_norm(config) if config.final_norm else NoNorm(config.d_model)
        self.unembed_transform = UnembedTransform(config) if config.unembed_transform else None
        self.unembed = None if vision else Unembed(
            config.d_model, config.d_vocab_out, config.bias, self.embed if config.tie_embeddings else None, config.init_std
        )
        self.logits = HookPoint()  # [batch, pos, d_vocab_out]
        self.classifier = SequenceClassifier(config) if config.n_classes else None  # every weight is drawn (init.py)
        self.setup_hooks()

    # -- initialisation ------------------------------------------------------------------------------

    def reset_parameters(self) -> None:
        """Draw every weight afresh, as construction does (``glassformer/model/init.py``: GPT-2's scheme), by
        building a second model of the same class on the CPU and copying its weights in."""
        with torch.no_grad():
            self.load_state_dict(type(self)(self.config).state_dict())

    # -- forward -------------------------------------------------------------------------------------

    def forward(
        self,
        tokens: torch.Tensor,  # [batch, pos] (decoder input for an encoder-decoder)
        src: torch.Tensor | None = None,  # [batch, src_pos] encoder-decoder: the source
        *,
        attention_mask: torch.Tensor | None = None,  # [batch, pos] (all positions so far, with a cache)
        src_attention_mask: torch.Tensor | None = None,  # [batch, src_pos]
        memory: torch.Tensor | None = None,  # [batch, src_pos, d_model]: a precomputed encode(src)
        cache: KVCache | None = None,
        segment_memory: SegmentMemory | None = None,  # Transformer-XL: read, then updated
        position_ids: torch.Tensor | None = None,  # [batch, pos]: what W_pos / sinusoids read (left padding)
        start_at_layer: int | None = None,  # then ``tokens`` is the residual stream entering that block
        stop_at_layer: int | None = None,  # return the residual stream entering that block instead of logits
        return_type: str = "logits",  # "logits", "loss", "loss_per_token" or "both" (logits, loss)
        targets: torch.Tensor | None = None,  # [batch, pos] ids the loss scores (-100: ignored); [batch] classes
    ):
        """Logits over the (output) vocabulary at every position: [batch, pos, d_vocab_out].
        A vision model (``input="patches"``) takes images and returns class logits [batch, n_classes].

        ``position_ids`` only changes which position an *additive* positional embedding (learned, sinusoidal)
        gives each token; by default token t of the call is position offset + t. A left-padded row's first
        real token should be position 0: pass ``attention_mask.cumsum(-1) - 1`` (``generate`` does). The
        causal mask, the cache and the relative schemes (RoPE, ALiBi, T5, sliding and strided windows) only see
        differences of positions, which left padding does not change (the 'fixed' sparse pattern's blocks do).

        Forward options (``forward_options.py``): ``stop_at_layer=l`` returns resid_pre of block l (the stream
        after blocks 0..l-1, no final norm) [batch, pos, d_model]; ``start_at_layer=l`` takes that stream as
        ``tokens`` and runs blocks l.. to the logits; ``return_type="loss"`` returns the mean cross-entropy of
        ``targets`` (default for a decoder: each next token), ``"loss_per_token"`` it per position
        [batch, pos], ``"both"`` the pair (logits, loss)."""
        check_forward_options(self, return_type, start_at_layer, stop_at_layer, cache, segment_memory)
        x = self.residual_stream(
            tokens, src, attention_mask=attention_mask, src_attention_mask=src_attention_mask, memory=memory,
            cache=cache, segment_memory=segment_memory, position_ids=position_ids,
            start_at_layer=start_at_layer, stop_at_layer=stop_at_layer,
        )
        if stop_at_layer is not None:
            return x  # [batch, pos, d_model]
        if self.unembed is None:  # vision: no vocabulary; the class token's residual is classified
            logits = self.logits(self.classifier(x))  # [batch, n_classes]
        else:
            if self.unembed_transform is not None:
                x = self.unembed_transform(x)  # BERT's MLM head: Norm(act(x W_T + b_T))
            logits = self.logits(self.unembed(x))  # [batch, pos, d_vocab_out]
        if return_type == "logits":
            return logits
        loss = cross_entropy_loss(self, logits, tokens if start_at_layer is None else None, targets, attention_mask,
                                  per_token=return_type == "loss_per_token")
        return (logits, loss) if return_type == "both" else loss

    def residual_stream(
        self, tokens, src=None, *, attention_mask=None, src_attention_mask=None, memory=None, cache=None, segment_memory=None,
        position_ids=None, start_at_layer=None, stop_at_layer=None,
    ):
        """The final residual stream after ``ln_final``: [batch, pos, d_model] (before it, and before block
        ``stop_at_layer``, when that is given; from ``tokens`` = the stream entering ``start_at_layer``)."""
        start = 0 if start_at_layer is None else layer_index(start_at_layer, len(self.blocks), "start_at_layer")
        stop = len(self.blocks) if stop_at_layer is None else layer_index(stop_at_layer, len(self.blocks), "stop_at_layer")
        if start > stop:
            raise InputError(f"start_at_layer ({start}) is after stop_at_layer ({stop})")
        if start_at_layer is not None:
            tokens = check_residual(tokens, self.config.d_model)  # [batch, pos, d_model]
        elif self.config.input == "patches":
            tokens = self.embed.check_images(tokens)  # [batch, channels, H, W]
        else:
            tokens = self._check_tokens(tokens, "tokens", offset=cache.offset if cache is not None else 0)
            if self.config.memory_len and cache is None and tokens.shape[1] > self.config.n_ctx:
                return self._segment_recurrence(tokens, attention_mask, segment_memory)
        if self.encoder is not None:
            if memory is None:
                if src is None:
                    raise InputError("an encoder-decoder model needs the source sequence: model(tokens, src=...)")
                memory = self.encode(src, src_attention_mask)
        elif src is not None or memory is not None:
            raise InputError(f"src/memory given, but a {self.config.arch!r} model has no encoder-decoder attention")
        offset = cache.offset if cache is not None else 0
        read_segment = segment_memory is not None and offset == 0  # after that, the cache holds the memory's keys
        if segment_memory is not None:
            if not self.config.memory_len:
                raise InputError("segment_memory given, but the model has memory_len = 0 (not a Transformer-XL)")
            segment_memory.check_batch(tokens.shape[0])
            offset += segment_memory.length if read_segment else 0  # the memory sits before the segment
        n_pos = self.config.n_patches + 1 if self.config.input == "patches" else tokens.shape[1]
        positions = torch.arange(offset, offset + n_pos, device=tokens.device)  # [pos]
        if start_at_layer is not None:
            x = tokens  # [batch, pos, d_model]: the stream entering block `start`
        else:
            if position_ids is not None:
                position_ids = self._check_position_ids(position_ids, tokens)  # [batch, pos]
            x = self.drop(embed_tokens(self, tokens, positions if position_ids is None else position_ids))  # [batch, pos, d_model]
        for i in range(start, stop):
            block = self.blocks[i]
            x = block(
                x,
                positions=positions,
                attention_mask=attention_mask,
                memory=memory,
                memory_mask=src_attention_mask,
                cache=cache.layers[i] if cache is not None else None,
                segment=segment_memory.layers[i] if segment_memory is not None else None,
                read_segment=read_segment,
            )
        return x if stop_at_layer is not None else self.ln_final(x)  # [batch, pos, d_model]

    def _segment_recurrence(self, tokens, attention_mask, segment_memory) -> torch.Tensor:
        """Transformer-XL over a sequence longer than n_ctx: segments of n_ctx positions, in order, each one
        attending to the (stop-gradient) memory the previous ones left. So the trainer trains the recurrence
        by feeding long sequences; hooks fire once per segment (run_with_cache keeps the last)."""
        if attention_mask is not None:
            raise InputError("a Transformer-XL input longer than n_ctx is split into segments: padding masks are not supported")
        memory = segment_memory if segment_memory is not None else self.new_segment_memory()
        n_ctx = self.config.n_ctx
        segments = [self.residual_stream(tokens[:, s : s + n_ctx], segment_memory=memory) for s in range(0, tokens.shape[1], n_ctx)]
        return torch.cat(segments, dim=1)  # [batch, pos, d_model]

    def encode(self, src: torch.Tensor, src_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder-decoder: run the encoder stack once; its output is the decoder's cross-attention memory."""
        if self.encoder is None:
            raise InputError(f"encode() needs an encoder-decoder model, this one is {self.config.arch!r}")
        return self.encoder(self._check_tokens(src, "src"), src_attention_mask)  # [batch, src_pos, d_model]

    def classify(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder sequence classification from position 0's final residual: [batch, n_classes]."""
        if self.classifier is None:
            raise InputError("classify() needs an encoder model built with n_classes > 0")
        return self.classifier(self.residual_stream(tokens, attention_mask=attention_mask))

    def new_cache(self) -> KVCache:
        """An empty key/value cache for incremental decoding (``model(new_tokens, cache=cache)``)."""
        if not self.config.causal:
            raise InputError("a KV cache needs a causal model (decoder or encoder-decoder)")
        return KVCache(len(self.blocks))

    def new_segment_memory(self) -> SegmentMemory:
        """An empty Transformer-XL memory: ``model(segment, segment_memory=mem)`` reads and updates it."""
        if not self.config.memory_len:
            raise InputError("new_segment_memory() needs a decoder built with memory_len > 0 (Transformer-XL)")
        return SegmentMemory(len(self.blocks), self.config.memory_len)

    def generate(self, tokens: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
        """Sample a continuation; see :func:`glassformer.model.generate.generate` for the options."""
        from glassformer.model.generate import generate

        return generate(self, tokens, max_new_tokens, **kwargs)

    def beam_search(self, src: torch.Tensor, **kwargs) -> torch.Tensor:
        """Encoder-decoder beam search; see :func:`glassformer.model.generate.beam_search`."""
        from glassformer.model.generate import beam_search

        return beam_search(self, src, **kwargs)

    # -- input checks --------------------------------------------------------------------------------

    def _check_tokens(self, tokens: torch.Tensor, what: str, offset: int = 0) -> torch.Tensor:
        """Reject what would otherwise fail deep inside torch: wrong type or rank, ids out of vocabulary,
        a sequence longer than learned positions cover. A 1-D sequence gets a batch dimension."""
        _require_integers(tokens, f"{what} must be an integer tensor of token ids")
        if tokens.dim() == 1:
            tokens = tokens[None]
        if tokens.dim() != 2 or tokens.shape[1] == 0:
            raise InputError(f"{what} must have shape [batch, pos] with pos >= 1, got {tuple(tokens.shape)}")
        if (span := _value_range(tokens)) is not None:
            lo, hi = span
            if lo < 0 or hi >= self.config.d_vocab:
                bad = hi if hi >= self.config.d_vocab else lo
                raise InputError(f"{what} contains token id {bad}, outside the vocabulary [0, {self.config.d_vocab})")
        if self.config.positional == "learned" and offset + tokens.shape[1] > self.config.n_ctx:
            raise InputError(
                f"{what} has {offset + tokens.shape[1]} positions but the model's context is n_ctx = {self.config.n_ctx}"
            )
        return tokens.long()

    def _check_position_ids(self, position_ids: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        _require_integers(position_ids, "position_ids must be an integer tensor")
        if position_ids.shape != tokens.shape:
            raise InputError(f"position_ids has shape {tuple(position_ids.shape)}, the tokens {tuple(tokens.shape)}: they must match")
        if self.config.input == "patches" or self.config.memory_len:
            raise InputError("position_ids is for token models without Transformer-XL memory")
        if (span := _value_range(position_ids)) is not None:
            lo, hi = span
            if lo < 0 or (self.config.positional == "learned" and hi >= self.config.n_ctx):
                raise InputError(f"position_ids holds {hi if lo >= 0 else lo}: positions must lie in [0, n_ctx = {self.config.n_ctx})")
        return position_ids.long()

    def num_params(self, include_embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if not include_embeddings:
            n -= sum(p.numel() for p in self.embed.parameters())  # W_E (or the patch embedding)
            n -= self.pos_embed.W_pos.numel() if hasattr(self.pos_embed, "W_pos") else 0
        return n

    def extra_repr(self) -> str:
        c = self.config
        return f"arch={c.arch!r}, d_model={c.d_model}, n_layers={c.n_layers}, n_heads={c.n_heads}, params={self.num_params():,}"


def _require_integers(t, message: str) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise InputError(f"{message}, got {getattr(t, 'dtype', type(t).__name__)}")


def _value_range(t: torch.Tensor) -> tuple[int, int] | None:
    """(min, max) of an integer tensor, or None while compiling (reading it back is a host sync and a graph break)."""
    if torch.compiler.is_compiling():
        return None
    lo, hi = torch.aminmax(t)
    return int(lo), int(hi)


class SequenceClassifier(nn.Module):
    """class_logits = resid_final[:, 0] W + b: BERT's [CLS]-position classifier (without its pooler)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.W = weight(config, config.d_model, config.n_classes)
        self.b = nn.Parameter(torch.zeros(config.n_classes))

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        return resid[:, 0] @ self.W + self.b  # [batch, n_classes]
