"""Image classification for the vision transformer (``input="patches"``, Dosovitskiy et al. 2021).

Two sources, one interface (``batch``, ``rows``, ``labels``, ``class_names``, ``model_fields``):

* :class:`DigitsTask` ("digits") -- scikit-learn's 8x8 handwritten digits (1,797 images that ship with
  the package; nothing is downloaded), pixels / 16, a fixed seeded 1,400 / 397 split.
* :class:`ImageFolderTask` ("images") -- a folder with one sub-folder per class (``cats/``, ``dogs/``),
  every image resized to ``image_size`` x ``image_size`` (grey, or RGB with ``channels=3``), pixels / 255,
  a fixed seeded 10% held out.

A batch's inputs are the images flattened to ``[batch, channels * H * W]`` (the patch embedding cuts them
into patches, ``glassformer/model/vision.py``); its targets are the ``[batch]`` labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from glassformer.errors import ConfigError, InputError
from glassformer.train.batch import Batch
from glassformer.train.tasks.base import check_choice, check_int
from glassformer.train.tasks.records import split_rows

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class _ImageTask:
    archs = ("encoder",)
    metric_aliases = {"accuracy": "sequence_accuracy"}
    tokenizer = None
    images: torch.Tensor  # [n, channels * H * W]
    labels: torch.Tensor  # [n]
    class_names: list[str]
    image_size: int
    channels: int
    patch_size: int

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_chars(self) -> list[str]:
        return self.class_names

    def __len__(self) -> int:
        return len(self.labels)

    def n_ctx(self, arch: str = "encoder") -> int:
        check_choice(self.name, "arch", arch, self.archs)
        return 1 + (self.image_size // self.patch_size) ** 2  # the class token and the patches

    def model_fields(self) -> dict:
        """The ModelConfig fields this task fixes (the rest come from the size flags)."""
        return {"input": "patches", "image_size": self.image_size, "patch_size": self.patch_size,
                "n_channels": self.channels, "n_classes": self.n_classes, "n_ctx": self.n_ctx(), "d_vocab": 1}

    def rows(self, index: list[int]) -> Batch:
        return Batch(self.images[index], self.labels[index], None)

    def batch(self, batch_size: int, arch: str = "encoder", generator: torch.Generator | None = None) -> Batch:
        if arch not in self.archs:
            raise ConfigError(f"task {self.name!r} supports arch in {list(self.archs)}, got {arch!r}")
        g = self.generator if generator is None else generator
        return self.rows(torch.randint(0, len(self.labels), (batch_size,), generator=g).tolist())


class DigitsTask(_ImageTask):
    """scikit-learn's 8x8 digits, 10 classes."""

    name = "digits"
    description = "scikit-learn's 8x8 handwritten digits, 10 classes (vision transformer)"

    def __init__(self, split: str = "train", patch_size: int = 4, seed: int = 0):
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ConfigError("the digits task needs scikit-learn (pip install scikit-learn)") from None
        self.split = check_choice(self.name, "split", split, ("train", "val", "test"))
        self.image_size, self.channels = 8, 1
        self.patch_size = check_int(self.name, "patch_size", patch_size, 1, 8)
        if 8 % patch_size:
            raise ConfigError(f"task 'digits': patch_size must divide 8, got {patch_size}")
        self.seed = check_int(self.name, "seed", seed, 0)
        self.generator = torch.Generator().manual_seed(seed)
        data = load_digits()
        order = torch.randperm(len(data.target), generator=torch.Generator().manual_seed(0))
        rows = order[:1400] if split == "train" else order[1400:]
        self.images = torch.tensor(data.images, dtype=torch.float32)[rows].reshape(-1, 64) / 16.0  # [n, 64]
        self.labels = torch.tensor(data.target)[rows]  # [n]
        self.class_names = [str(d) for d in range(10)]

    @property
    def options(self) -> dict:
        return {"split": self.split, "patch_size": self.patch_size, "seed": self.seed}

    def with_split(self, split: str) -> "DigitsTask":
        return DigitsTask(split, self.patch_size, self.seed)


class ImageFolderTask(_ImageTask):
    """Images in ``path/CLASS/*.png`` (any format Pillow reads), one sub-folder per class."""

    name = "images"
    description = "an image folder, one sub-folder per class (vision transformer)"

    def __init__(self, path: str | Path, split: str = "train", image_size: int = 32, patch_size: int = 8,
                 channels: int = 1, seed: int = 0):
        from PIL import Image, UnidentifiedImageError

        self.path = Path(path)
        self.split = check_choice(self.name, "split", split, ("train", "val", "test"))
        self.image_size = check_int(self.name, "image_size", image_size, 1)
        self.patch_size = check_int(self.name, "patch_size", patch_size, 1, image_size)
        if image_size % patch_size:
            raise ConfigError(f"task 'images': patch_size {patch_size} must divide image_size {image_size}")
        self.channels = check_choice(self.name, "channels", channels, (1, 3))
        self.seed = check_int(self.name, "seed", seed, 0)
        self.generator = torch.Generator().manual_seed(seed)
        if not self.path.is_dir():
            raise InputError(f"no such image folder: {self.path}")
        classes = sorted(d for d in self.path.iterdir() if d.is_dir() and not d.name.startswith("."))
        if len(classes) < 2:
            raise InputError(f"{self.path} must hold one sub-folder per class (2 or more); found {len(classes)}")
        files, labels = [], []
        for label, folder in enumerate(classes):
            found = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files += found
            labels += [label] * len(found)
        self.class_names = [d.name for d in classes]
        rows = split_rows(len(files), split, seed=0).tolist()
        mode = "L" if channels == 1 else "RGB"
        pixels = []
        for i in rows:
            try:
                with Image.open(files[i]) as im:
                    im = im.convert(mode).resize((image_size, image_size))
                    pixels.append(torch.from_numpy(np.asarray(im, dtype=np.float32)))  # [H, W] or [H, W, 3]
            except (UnidentifiedImageError, OSError) as e:
                raise InputError(f"{files[i]} could not be read as an image: {e}") from None
        images = torch.stack(pixels).reshape(len(rows), image_size, image_size, channels) / 255.0  # [n, H, W, c]
        self.images = images.permute(0, 3, 1, 2).reshape(len(rows), -1).contiguous()  # [n, c * H * W]
        self.labels = torch.tensor(labels)[rows]

    @property
    def options(self) -> dict:
        return {"path": str(self.path), "split": self.split, "image_size": self.image_size, "patch_size": self.patch_size,
                "channels": self.channels, "seed": self.seed}

    def with_split(self, split: str) -> "ImageFolderTask":
        return ImageFolderTask(self.path, split, self.image_size, self.patch_size, self.channels, self.seed)


__all__ = ["DigitsTask", "ImageFolderTask"]
