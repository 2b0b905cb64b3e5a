"""The data side of a training run: which images train and validate, their normalisation and augmentation.

Used by ``vggedu.train`` (lesson 05); the datasets and transforms themselves are ``vggedu.data`` (lesson 04).

Splits. ``shapes`` has its own train/val/test. Fashion-MNIST and CIFAR-10 publish train and test
only: ``holdout`` training images (a seeded choice) become the validation split that the plateau
schedule and ``best.npz`` watch, and the official test set is kept for ``vggedu evaluate`` — never
tuned on. An image folder uses ``PATH/train``, ``PATH/val``, ``PATH/test`` when they exist; a folder
without them is split by holding out images.

Normalisation (Sect. 2.1: "the only pre-processing we do is subtracting the mean RGB value, computed
on the training set"): the net sees ``(pixel - mean) * pixel_scale``. The paper fed 0..255 pixels
(scale 1); the default 1/255 keeps the first layers' activations near 1 under He or Glorot
initialisation. Mean and scale are saved in every checkpoint's meta so evaluation matches training.

Augmentation (Sect. 3.1), one image at a time from the loader's per-image generator: rescale so the
side is S, drawn from [size, max_scale * size] (scale jittering), take a random size x size crop,
flip horizontally with probability 1/2. Validation and test images get one centre crop. ``S_range``
= (S_min, S_max) in pixels sets the training scale directly: (40, 40) a fixed S = 40 for 32 crops
(the paper's S = 256 for 224), (40, 80) jittering (its [256, 512]); ``eval_Q`` the validation
images' scale before their centre crop (lesson 07, bench/paper_tables.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vggedu.data import CenterCrop, Compose, DataLoader, RandomCrop, RandomFlip, Rescale, ScaleJitter, load_dataset
from vggedu.data.datasets import holdout_split

HOLDOUT_DATASETS = ("fashion-mnist", "fashion_mnist", "fashionmnist", "cifar10", "cifar-10")


class RunData:
    """Training and validation datasets of one run, with the training set's mean pixel."""

    def __init__(self, name: str, train, val, size: int, augment: bool = True, max_scale: float = 1.25,
                 mean=None, S_range: tuple | None = None, eval_Q: int | None = None):
        for split, ds in (("train", train), ("val", val)):
            images = getattr(ds, "images", None)
            if not isinstance(images, np.ndarray) or images.ndim != 4:
                raise ValueError(f"{name} {split}: expected images as an (N, H, W, C) array, "
                                 f"got {getattr(images, 'shape', type(images))}")
            if len(ds) == 0:
                raise ValueError(f"{name} {split}: no images")
        if train.images.shape[-1] != val.images.shape[-1]:
            raise ValueError(f"{name}: train images have {train.images.shape[-1]} channels, val {val.images.shape[-1]}")
        self.name, self.train, self.val, self.size = name, train, val, int(size)
        self.classes = list(train.classes)
        self.num_classes = len(self.classes)
        self.in_channels = int(train.images.shape[-1])
        self.augment, self.max_scale = bool(augment), float(max_scale)
        if S_range is not None and not 1 <= int(S_range[0]) <= int(S_range[1]):
            raise ValueError(f"{name}: S_range must be (S_min, S_max) with 1 <= S_min <= S_max, got {S_range}")
        self.S_range = None if S_range is None else (int(S_range[0]), int(S_range[1]))
        self.eval_Q = None if eval_Q is None else int(eval_Q)
        self.mean = (train_mean(train.images) if mean is None else np.asarray(mean, np.float32)).reshape(-1)

    def train_transform(self):
        """The training augmentation (None when off and the images are already size x size)."""
        if self.augment:
            low, top = self.S_range or (self.size, max(self.size, int(round(self.max_scale * self.size))))
            return Compose([ScaleJitter(low, top) if top > low else Rescale(low), RandomCrop(self.size), RandomFlip()])
        return None if self.train.images.shape[1:3] == (self.size, self.size) else centre_crop(self.size)

    def train_loader(self, batch_size: int, seed: int = 0, workers: int = 1) -> DataLoader:
        return DataLoader(self.train, batch_size, shuffle=True, seed=seed, transform=self.train_transform(),
                          workers=workers)

    def eval_batches(self, dataset, batch_size: int):
        """(x, y) batches of ``dataset`` in order, one centre crop per image (of the image rescaled to ``eval_Q``)."""
        same = dataset.images.shape[1:3] == (self.size, self.size) and self.eval_Q in (None, self.size)
        return DataLoader(dataset, batch_size, shuffle=False, prefetch=0,
                          transform=None if same else centre_crop(self.size, self.eval_Q))

    def normalise(self, x: np.ndarray, scale: float) -> np.ndarray:
        """(x - mean) * scale, in place on the float32 batch the loader made."""
        x -= self.mean
        x *= np.float32(scale)
        return x

    def input_meta(self, scale: float) -> dict:
        return {"mean": [float(m) for m in self.mean], "scale": float(scale), "size": self.size}


def centre_crop(size: int, Q: int | None = None) -> Compose:
    """Rescale so that the smaller side is Q (default ``size``), then the centre size x size crop."""
    return Compose([Rescale(Q or size), CenterCrop(size)])


def train_mean(images: np.ndarray) -> np.ndarray:
    """The mean pixel of ``images`` (N, H, W, C), per channel, float32."""
    return images.reshape(-1, images.shape[-1]).mean(axis=0, dtype=np.float64).astype(np.float32)


def _first(ds, n):
    if n is None or n >= len(ds):
        return ds
    if n < 1:
        raise ValueError(f"{ds.name}: asked for {n} images")
    return ds.subset(slice(0, int(n)))


def load_split(data: str, split: str, size: int, holdout: int = 5000, n: int | None = None, seed: int = 0):
    """One split of dataset ``data`` at ``size`` x ``size``, with the run's holdout rule (module docstring)."""
    key = data.lower()
    if key == "shapes":
        return load_dataset("shapes", split, size=size, seed=seed, n=n)
    if key in HOLDOUT_DATASETS:
        ds = load_dataset(data, split, size=size, seed=seed, holdout=holdout if split != "test" else 0)
        if split != "test" and not holdout:
            raise ValueError(f"{data}: a validation split needs holdout > 0 (never validate on the test set)")
        return _first(ds, n)
    if key.startswith("folder:"):
        root = Path(data[len("folder:"):]).expanduser()
        wanted = {"train": ["train"], "val": ["val"], "test": ["test", "val"]}[split]
        sub = next((s for s in wanted if (root / s).is_dir()), None)
        if sub is not None:
            return _first(load_dataset(data, sub, size=size), n)
        ds = load_dataset(data, "train", size=size)  # no split folders: hold images out ourselves
        if split == "test":
            return _first(ds, n)  # documented: evaluating such a folder uses every image
        train, val = holdout_split(len(ds), min(int(holdout), len(ds) // 10) or 1, seed)
        return _first(ds.subset(val if split == "val" else train), n)
    return _first(load_dataset(data, split, size=size, seed=seed), n)


def load_run_data(cfg, given=None) -> RunData:
    """The ``RunData`` of a ``TrainConfig`` (``given``: a (train, val) pair of datasets to use instead)."""
    if given is not None:
        train, val = given
        return RunData(getattr(train, "name", "data"), train, val, cfg.size, cfg.augment, cfg.max_scale)
    train = load_split(cfg.data, "train", cfg.size, cfg.holdout, cfg.train_images, cfg.data_seed)
    val = load_split(cfg.data, "val", cfg.size, cfg.holdout, cfg.val_images, cfg.data_seed)
    return RunData(cfg.data, train, val, cfg.size, cfg.augment, cfg.max_scale)
