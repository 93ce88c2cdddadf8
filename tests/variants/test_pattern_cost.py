"""The long-sequence patterns really avoid the [pos, pos] matrix: at 2048 positions no single allocation of
their forward pass comes near the size of one pos x pos float matrix (16 MiB), while the explicit full
attention path allocates several. Memory, counted by the PyTorch profiler; no timing is asserted
(bench/bench_attention.py measures time and peak memory)."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from glassformer import ModelConfig, Transformer

N = 2048
ONE_MATRIX = N * N * 4  # bytes of one float32 [pos, pos] matrix


def largest_allocation(model: Transformer, **kwargs) -> int:
    tokens = torch.randint(0, 11, (1, N))
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model.run_with_cache(tokens, **kwargs) if kwargs else model(tokens)
    return max(event.cpu_memory_usage for event in prof.events())


@pytest.mark.parametrize(
    "variant",
    [
        dict(attention="sliding", window=64),
        dict(attention="sparse"),  # stride = sqrt(2048) ~ 45
        dict(attention="sparse", sparse_pattern="fixed", sparse_summary=4),
        dict(attention="linear"),
        dict(arch="encoder", attention="linformer", linformer_k=64),
    ],
    ids=["sliding", "sparse-strided", "sparse-fixed", "linear", "linformer"],
)
def test_no_quadratic_allocation(variant):
    cfg = ModelConfig(d_model=32, n_heads=2, n_layers=1, d_vocab=11, n_ctx=N, positional="rope", **variant)
    assert largest_allocation(Transformer(cfg).eval()) < ONE_MATRIX / 4


def test_the_measure_sees_a_quadratic_allocation():  # the control
    cfg = ModelConfig(d_model=32, n_heads=2, n_layers=1, d_vocab=11, n_ctx=N, positional="rope")
    assert largest_allocation(Transformer(cfg).eval(), names="blocks.0.attn.pattern") >= 2 * ONE_MATRIX
