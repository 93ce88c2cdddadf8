"""OPT: learned positions stored with an offset of 2, ReLU, pre-LN and the post-LN 350M layout, give HF's
logits within 1e-4; a narrower embedding (project_in/out) is refused by name."""

import pytest
import torch
from hf_models import VOCAB, assert_logits_match, randomize, tokens

from glassformer.errors import CheckpointError
from glassformer.interop import from_hf

transformers = pytest.importorskip("transformers")


def opt(**overrides):
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, ffn_dim=48, num_attention_heads=4,
                  max_position_embeddings=40, word_embed_proj_dim=32, pad_token_id=1)
    return randomize(transformers.OPTForCausalLM(transformers.OPTConfig(**{**kwargs, **overrides})))


@pytest.mark.parametrize("pre_ln", [True, False])
def test_opt_logits_match_hf(pre_ln):
    hf = opt(do_layer_norm_before=pre_ln)
    model = from_hf(hf)
    assert (model.config.norm_position, model.config.final_norm, model.config.act) == ("pre" if pre_ln else "post", pre_ln, "relu")
    x = tokens(pos=20)
    with torch.no_grad():
        assert_logits_match(model(x), hf(x).logits)


def test_opt_with_a_projected_embedding_is_refused():
    with pytest.raises(CheckpointError, match="word_embed_proj_dim"):
        from_hf(opt(word_embed_proj_dim=16))
