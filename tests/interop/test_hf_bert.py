"""BERT masked-LM: glassformer's post-LN encoder (with embedding LayerNorm and the MLM-head transform)
gives HF's BertForMaskedLM logits within 1e-4, with and without padding."""

import pytest
import torch
from hf_models import assert_logits_match, bert, tokens

from glassformer.errors import CheckpointError
from glassformer.interop import from_hf

transformers = pytest.importorskip("transformers")


def test_bert_mlm_logits_match_hf():
    hf = bert()
    model = from_hf(hf)
    c = model.config
    assert (c.arch, c.norm_position, c.final_norm, c.norm_eps, c.act) == ("encoder", "post", False, 1e-12, "gelu")
    assert c.embed_norm and c.unembed_transform and c.tie_embeddings
    x = tokens(pos=20)
    assert_logits_match(model(x), hf(x).logits)


def test_bert_token_type_zero_is_folded_into_positions():
    """token_type_ids = 0 everywhere adds token_type_embeddings[0] at every position: folded into W_pos."""
    hf = bert()
    model = from_hf(hf)
    expected = hf.bert.embeddings.position_embeddings.weight + hf.bert.embeddings.token_type_embeddings.weight[0]
    torch.testing.assert_close(model.pos_embed.W_pos, expected, atol=0, rtol=0)
    x = tokens()
    assert_logits_match(model(x), hf(x, token_type_ids=torch.zeros_like(x)).logits)


def test_bert_with_padding_mask():
    hf = bert()
    model = from_hf(hf)
    x = tokens(batch=3, pos=15)
    mask = torch.ones_like(x)
    mask[0, 9:] = 0
    mask[2, 4:] = 0
    ours, theirs = model(x, attention_mask=mask), hf(x, attention_mask=mask).logits
    assert_logits_match(ours, theirs)
    # the mask really matters: without it the padded rows' real positions change
    assert not torch.allclose(model(x)[0, :9], theirs[0, :9], atol=1e-3)


def test_bert_from_saved_folder_and_relu(tmp_path):
    hf = bert(hidden_act="relu", layer_norm_eps=1e-5)
    hf.save_pretrained(tmp_path)  # the tied decoder weight is not stored; cls.predictions.bias is
    model = from_hf(tmp_path)
    assert model.config.act == "relu" and model.config.norm_eps == 1e-5
    x = tokens()
    assert_logits_match(model(x), hf(x).logits)


def test_bert_old_gamma_beta_layernorm_names(tmp_path):
    """Early BERT checkpoints name LayerNorm parameters gamma/beta; they load the same."""
    from safetensors.torch import save_file

    hf = bert()
    hf.save_pretrained(tmp_path)
    state = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v.clone()
        for k, v in hf.state_dict().items()
    }
    save_file(state, str(tmp_path / "model.safetensors"))
    x = tokens()
    assert_logits_match(from_hf(tmp_path)(x), hf(x).logits)


def test_bare_bert_model_has_no_mlm_head():
    with pytest.raises(CheckpointError, match="masked-LM head"):
        from_hf(bert().bert)


def test_bert_untied_decoder_with_its_own_bias(tmp_path):
    """Untied, the decoder has its own weight and bias (not cls.predictions.bias): HF's forward adds the
    decoder's, so that is the one imported."""
    hf = bert(tie_word_embeddings=False)
    assert not torch.equal(hf.cls.predictions.decoder.bias, hf.cls.predictions.bias)
    x = tokens()
    assert_logits_match(from_hf(hf)(x), hf(x).logits)
    hf.save_pretrained(tmp_path)
    model = from_hf(tmp_path)
    assert not model.config.tie_embeddings
    assert_logits_match(model(x), hf(x).logits)
