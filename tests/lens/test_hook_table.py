"""docs/hooks.md is generated from the model, is current, and misses no hook point of any config switch."""

from pathlib import Path

import pytest
import torch

from glassformer.lens.hook_table import build, markdown, model_inputs, rows, template
from glassformer.model.config import CHOICES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"

SWITCHES = [  # every value of every categorical field, and every switch that adds a component
    *({field: value} for field, values in CHOICES.items() for value in values if field not in ("attention", "input", "sparse_pattern")),
    {"attention": "sliding", "window": 3}, {"attention": "sparse", "sparse_pattern": "fixed"}, {"attention": "sparse"},
    {"attention": "linear"}, {"arch": "encoder", "attention": "linformer", "linformer_k": 8},
    {"arch": "encoder", "input": "patches", "image_size": 12, "patch_size": 4, "n_classes": 6},
    {"qk_norm": True}, {"attn_only": True}, {"embed_norm": True}, {"arch": "encoder", "unembed_transform": True},
    {"arch": "encoder", "n_classes": 3}, {"tie_embeddings": True}, {"norm_position": "post"}, {"final_norm": False},
    {"memory_len": 4, "positional": "rope"}, {"n_kv_heads": 1}, {"act": "geglu", "arch": "encoder-decoder"},
]


def test_the_page_is_generated_from_the_model():
    assert DOCS.read_text() == markdown(), "docs/hooks.md is stale: python -m glassformer.lens.hook_table > docs/hooks.md"


@pytest.fixture(scope="module")
def documented():
    return {row[0] for row in rows()}


@pytest.mark.parametrize("overrides", SWITCHES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_no_config_switch_adds_a_hook_point_missing_from_the_page(overrides, documented):
    model = build(overrides)
    args, kwargs = model_inputs(model)
    with torch.no_grad():  # every hook point, optional ones included, is reached by a forward
        _, cache = model.run_with_cache(*args, names=model.hook_names(optional=True), **kwargs)
    assert set(cache) == set(model.hook_names(optional=True))
    missing = {template(name) for name in cache} - documented
    assert not missing, f"hook points missing from docs/hooks.md: {sorted(missing)}"
