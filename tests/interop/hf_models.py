"""Small random-weight Hugging Face models, and the comparisons every interop test makes."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

VOCAB = 97
ATOL = 1e-4  # the bar: glassformer logits within 1e-4 of HF's, in float32


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter with noise large enough that every layer matters: norm gains near 1,
    biases and matrices clearly non-zero (HF's init leaves biases at 0 and gains at 1, which would hide
    a bias or a gain loaded into the wrong place)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name.lower() or name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
    return model.eval()


def gpt2(**overrides):
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0, **overrides
    )
    return randomize(transformers.GPT2LMHeadModel(config))


def llama(**overrides):
    kwargs = dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rope_theta=500.0, bos_token_id=0, eos_token_id=0,
    )
    return randomize(transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**kwargs, **overrides})))


def bert(**overrides):
    kwargs = dict(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=40, type_vocab_size=2,
    )
    return randomize(transformers.BertForMaskedLM(transformers.BertConfig(**{**kwargs, **overrides})))


def tokens(batch: int = 2, pos: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, pos), generator=torch.Generator().manual_seed(seed))


def assert_logits_match(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Equal within 1e-4, and not trivially so: the logits must actually vary."""
    assert ours.shape == theirs.shape
    assert theirs.std() > 0.3, "reference logits too flat for the comparison to mean anything"
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def incremental_logits(model, x: torch.Tensor, chunks=(5, 1, 1, 3)) -> torch.Tensor:
    """glassformer logits computed through the KV cache: a prompt, then a few tokens at a time."""
    cache, out, start = model.new_cache(), [], 0
    for n in [*chunks, x.shape[1] - sum(chunks)]:
        if n:
            out.append(model(x[:, start : start + n], cache=cache))
            start += n
    assert cache.offset == x.shape[1]
    return torch.cat(out, dim=1)  # [batch, pos, d_vocab]
