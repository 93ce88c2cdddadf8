"""The vision transformer: patches become tokens after a class token, and a small ViT trained with the core
trainer classifies scikit-learn's 8x8 digits (1797 images that ship with the package, nothing downloaded)."""

import pytest
import torch

from glassformer import ConfigError, InputError, ModelConfig, Transformer
from glassformer.train.batch import Batch
from glassformer.train.trainer import TrainConfig, Trainer

VIT = dict(arch="encoder", input="patches", image_size=8, patch_size=4, n_classes=10, n_ctx=5, d_model=48, n_heads=4)


def test_patch_embedding_and_class_token():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**VIT)).eval()
    images = torch.rand(2, 8, 8)
    _, cache = model.run_with_cache(images, names=["embed", "blocks.0.resid_pre", "blocks.0.attn.pattern"])
    embed, W_patch = cache["embed"], model.embed.W_patch  # [batch, 1 + 4, d_model]
    torch.testing.assert_close(embed[:, 0], model.embed.W_cls.expand(2, -1))  # position 0: the class token
    for r in range(2):
        for c in range(2):  # patch (r, c) is token 1 + 2 r + c: its 16 pixels, row by row
            pixels = images[:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].reshape(2, 16)
            torch.testing.assert_close(embed[:, 1 + 2 * r + c], pixels @ W_patch + model.embed.b_patch)
    torch.testing.assert_close(cache["blocks.0.resid_pre"], embed + model.pos_embed.W_pos[:5])
    assert cache["blocks.0.attn.pattern"].shape == (2, 4, 5, 5)
    changed = images.clone()
    changed[:, 5, 6] += 1.0  # a pixel of patch (1, 1) = token 4
    _, other = model.run_with_cache(changed, names="embed")
    moved = (other["embed"] - embed).abs().amax(dim=(0, 2)) > 0
    assert moved.tolist() == [False, False, False, False, True]
    flat = model(images.reshape(2, 64))  # a Batch stores images flattened; [batch, 1, 8, 8] works as well
    torch.testing.assert_close(flat, model(images[:, None]))
    torch.testing.assert_close(flat, model.classify(images))
    assert flat.shape == (2, 10)


def test_bad_images_and_configs():
    model = Transformer(ModelConfig(**VIT))
    with pytest.raises(InputError, match=r"shape \[batch, 1, 8, 8\]"):
        model(torch.rand(2, 7, 7))
    with pytest.raises(InputError, match="float images"):
        model(torch.zeros(2, 64, dtype=torch.long))
    with pytest.raises(ConfigError, match="not divisible by patch_size"):
        ModelConfig(**{**VIT, "patch_size": 3})
    with pytest.raises(ConfigError, match="n_ctx = 4 is too small for 4 patches"):
        ModelConfig(**{**VIT, "n_ctx": 4})
    with pytest.raises(ConfigError, match="arch='encoder' and n_classes > 0"):
        ModelConfig(**{**VIT, "arch": "decoder", "n_classes": 0})


class Digits:
    """scikit-learn's 8x8 digits as a task for the core Trainer: fixed 1400 / 397 split, pixels / 16."""

    name, archs, n_classes = "digits", ("encoder",), 10

    def __init__(self, split: str = "train"):
        from sklearn.datasets import load_digits

        data = load_digits()
        order = torch.randperm(len(data.target), generator=torch.Generator().manual_seed(0))
        rows = order[:1400] if split == "train" else order[1400:]
        self.split = split
        self.images = torch.tensor(data.images, dtype=torch.float32)[rows].reshape(-1, 64) / 16.0  # [n, 64]
        self.labels = torch.tensor(data.target)[rows]

    def with_split(self, split: str) -> "Digits":
        return Digits(split)

    def batch(self, batch_size: int, arch: str = "encoder", generator=None) -> Batch:
        rows = torch.randint(0, len(self.labels), (batch_size,), generator=generator)
        return Batch(self.images[rows], self.labels[rows], None)  # classification: targets [batch]


def test_vit_learns_the_digits(seed, record_property):
    pytest.importorskip("sklearn")
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(**VIT))
    config = TrainConfig(steps=250, batch_size=64, lr=3e-3, warmup_steps=20, eval_every=0, quiet=True, device="cpu", seed=seed)
    Trainer(model, Digits("train"), config).train()
    test = Digits("test")  # 397 images the model never saw
    with torch.no_grad():
        accuracy = (model.classify(test.images).argmax(-1) == test.labels).float().mean().item()
    record_property("accuracy", accuracy)
    assert accuracy >= 0.9  # chance is 0.1; measured 0.927-0.967 over seeds 0-4 (1 thread)
