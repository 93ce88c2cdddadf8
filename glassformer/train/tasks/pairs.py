"""Sequence-to-sequence pairs from a file, for the encoder-decoder (Vaswani et al. 2017).

Each record is a (source, target) pair (TSV ``source<TAB>target`` or JSONL, :mod:`records`). Training is
teacher forcing: the encoder reads the source, the decoder reads ``[BOS] y_1 .. y_n`` and predicts
``y_1 .. y_n [EOS]`` at every position,

    L = -(1 / N) * sum_{pairs} sum_{t = 1}^{n + 1} log p(y_t | y_<t, source)        (y_{n+1} = [EOS])

Sequences are right-padded with ``[PAD]``: the encoder's padding is masked (``src_attention_mask``), the
decoder's needs no mask (it is causal, so real positions never see the padding after them) and is left
out of the loss. ``sequence_accuracy`` under teacher forcing is exactly greedy decoding's exact match
(if every next-token argmax along the target is right, greedy decoding follows the target and stops at
[EOS]); :func:`decode_scores` decodes the held-out split for real, greedily and with beam search, and
reports exact match and token accuracy.
"""

from __future__ import annotations

import torch

from glassformer.train.batch import Batch
from glassformer.train.tasks.records import DEFAULT_MAX_TOKENS, RecordTask, build_tokenizer, encode_field, pad
from glassformer.train.tokenizers import BOS, EOS, PAD


class PairsTask(RecordTask):
    """Source -> target pairs from a TSV / JSONL file; ``split`` "train" or "val" (a fixed 10%)."""

    name = "pairs"
    kind = "pairs"
    description = "sequence-to-sequence pairs from a TSV or JSONL file (encoder-decoder)"
    archs = ("encoder-decoder",)
    n_classes = 0
    sep = BOS  # the decoder's start token (``glassformer sample`` starts from it)
    metric_aliases = {"exact_match": "sequence_accuracy"}

    def _encode(self, tokenizer, records: list[tuple[str, str]], rows: list[int]) -> int:
        self.tokenizer = build_tokenizer(tokenizer, [s + t for s, t in records], self.path, [PAD, BOS, EOS])
        self.pad_id, self.bos_id, self.eos_id = (self.tokenizer.token_to_id(t) for t in (PAD, BOS, EOS))
        self.max_tokens = limit = self.block_size or DEFAULT_MAX_TOKENS  # a source's limit; a target's is one less ([EOS])
        src, cut_src = encode_field(self.tokenizer, [s for s, _ in records], limit, self.too_long, self.path, "source")
        tgt, cut_tgt = encode_field(self.tokenizer, [t for _, t in records], limit - 1, self.too_long, self.path, "target")
        self.n_cut = cut_src + cut_tgt  # fields cut to fit (too_long="cut")
        self.src = [src[i] for i in rows]
        self.tgt = [tgt[i] for i in rows]
        self.answer_len = max(len(t) for t in tgt) + 1  # greedy decoding needs at most this many steps
        return self.block_size or max(max(len(s) for s in src), max(len(t) for t in tgt) + 1)

    @property
    def stop_tokens(self) -> list[int]:
        return [self.eos_id]

    def rows(self, index: list[int]) -> Batch:
        """The pairs ``index`` laid out for teacher forcing (module docstring)."""
        src, src_mask = pad([self.src[i] for i in index], self.pad_id)  # [batch, src_pos] each
        inputs, _ = pad([[self.bos_id] + self.tgt[i] for i in index], self.pad_id)  # [batch, tgt_pos]
        targets, real = pad([self.tgt[i] + [self.eos_id] for i in index], self.pad_id)  # [batch, tgt_pos]
        return Batch(inputs, targets, real.bool(), src=src, src_attention_mask=src_mask)

    def __repr__(self) -> str:
        return f"PairsTask({str(self.path)!r}, split={self.split!r}, pairs={len(self)}, d_vocab={self.d_vocab})"


@torch.no_grad()
def decode_scores(model, task: PairsTask, beam_size: int = 0, batch_size: int = 64) -> dict[str, float]:
    """Decode every pair of ``task`` (greedy, or beam search with ``beam_size`` beams) and score it:
    ``exact_match`` (the output up to [EOS] equals the target) and ``token_accuracy`` (target positions,
    [EOS] included, where the output has the right token)."""
    device = next(model.parameters()).device
    model.eval()
    exact = right = total = 0
    for start in range(0, len(task), batch_size):
        index = list(range(start, min(start + batch_size, len(task))))
        src, src_mask = pad([task.src[i] for i in index], task.pad_id)
        src, src_mask = src.to(device), src_mask.to(device)
        start_tokens = torch.full((len(index), 1), task.bos_id, device=device)  # [batch, 1]
        if beam_size:
            out = model.beam_search(src, tokens=start_tokens, max_new_tokens=task.answer_len, beam_size=beam_size,
                                    stop_tokens=task.stop_tokens, src_attention_mask=src_mask)
        else:
            out = model.generate(start_tokens, task.answer_len, src=src, src_attention_mask=src_mask, greedy=True,
                                 stop_tokens=task.stop_tokens)
        outs = out[:, 1:].tolist()  # [batch, new]
        for i, got in zip(index, outs):
            want = task.tgt[i] + [task.eos_id]
            got = got[: got.index(task.eos_id) + 1] if task.eos_id in got else got
            exact += got == want
            right += sum(a == b for a, b in zip(got, want))
            total += len(want)
    return {"exact_match": exact / len(task), "token_accuracy": right / total}


__all__ = ["PairsTask", "decode_scores"]
