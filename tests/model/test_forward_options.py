"""Forward options: running part of the stack, and returning the loss."""

import pytest
import torch
import torch.nn.functional as F

from glassformer import InputError, ModelConfig, Transformer


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Transformer(ModelConfig(d_model=32, n_layers=3, n_heads=4, d_vocab=11, n_ctx=16, positional="rope")).eval()


def test_stop_then_start_at_a_layer_is_the_whole_forward(model):
    tokens = torch.randint(0, 11, (2, 9))
    logits, cache = model.run_with_cache(tokens)
    for layer in range(4):
        resid = model(tokens, stop_at_layer=layer)  # [batch, pos, d_model]
        name = f"blocks.{layer}.resid_pre" if layer < 3 else "blocks.2.resid_post"
        torch.testing.assert_close(resid, cache[name])
        torch.testing.assert_close(model(resid, start_at_layer=layer), logits)
    torch.testing.assert_close(model(cache["blocks.1.resid_pre"], start_at_layer=1, stop_at_layer=-1), cache["blocks.2.resid_pre"])
    edited = cache["blocks.2.resid_pre"].clone()
    edited[:, 3] = 0  # an edited stream goes on from there
    with model.hooks({"blocks.2.resid_pre": lambda x, hook: edited}):
        torch.testing.assert_close(model(tokens), model(edited, start_at_layer=2))


def test_the_loss_is_the_next_token_cross_entropy(model):
    tokens = torch.randint(0, 11, (2, 9))
    logits = model(tokens)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 11), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(model(tokens, return_type="loss"), expected)
    both = model(tokens, return_type="both")
    torch.testing.assert_close(both[0], logits) and torch.testing.assert_close(both[1], expected)
    per_token = model(tokens, return_type="loss_per_token")  # [batch, pos], 0 at the last position
    assert per_token.shape == (2, 9) and torch.all(per_token[:, -1] == 0)
    torch.testing.assert_close(per_token[:, :-1].mean(), expected)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0  # left padding: the padded positions and the prediction of the first real token are skipped
    padded = model(tokens, attention_mask=mask, return_type="loss_per_token")
    assert torch.all(padded[1, :3] == 0) and torch.all(padded[0, :-1] > 0)
    resid = model(tokens, stop_at_layer=1)
    targets = torch.cat([tokens[:, 1:], torch.full((2, 1), -100)], dim=1)
    torch.testing.assert_close(model(resid, start_at_layer=1, return_type="loss", targets=targets), expected)


def test_an_encoder_needs_targets():
    torch.manual_seed(0)
    encoder = Transformer(ModelConfig(arch="encoder", d_model=32, n_heads=4, d_vocab=11, n_ctx=16)).eval()
    tokens = torch.randint(0, 11, (2, 6))
    with pytest.raises(InputError, match="needs targets="):
        encoder(tokens, return_type="loss")
    labels = torch.full_like(tokens, -100)
    labels[:, 2] = tokens[:, 2]  # a masked-LM loss at one position
    logits = encoder(tokens)
    torch.testing.assert_close(encoder(tokens, return_type="loss", targets=labels), F.cross_entropy(logits[:, 2], tokens[:, 2]))


@pytest.mark.parametrize("kwargs, message", [
    ({"stop_at_layer": 4}, "stop_at_layer must be an int in"),
    ({"start_at_layer": 2, "stop_at_layer": 1}, "after stop_at_layer"),
    ({"stop_at_layer": 1, "return_type": "loss"}, "returns the residual stream"),
    ({"return_type": "probs"}, "return_type must be one of"),
    ({"return_type": "loss", "targets": torch.zeros(2, 3, dtype=torch.long)}, "targets has shape"),
    ({"return_type": "loss", "targets": torch.full((2, 6), 11)}, "outside"),
])
def test_bad_options_are_named(model, kwargs, message):
    with pytest.raises(InputError, match=message):
        model(torch.randint(0, 11, (2, 6)), **kwargs)
    with pytest.raises(InputError, match="residual stream"):
        model(torch.randint(0, 11, (2, 6)), start_at_layer=1)  # tokens where a stream belongs
    with pytest.raises(InputError, match="start_at_layer needs targets|targets="):
        model(torch.randn(2, 6, 32), start_at_layer=1, return_type="loss")
