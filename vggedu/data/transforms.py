"""The paper's augmentation (Sect. 3.1) as small transforms, and the colour statistics they need.

Every transform is a callable ``t(img, rng) -> img`` on ONE image, HWC (height, width, channels),
with ``rng`` a ``numpy.random.Generator`` (transforms that draw nothing ignore it), so the same
generator state gives the same output. ``Compose`` chains them. In the paper's order:

    Rescale(S) or ScaleJitter(S_min, S_max)   isotropic rescale: the smaller side becomes S
    RandomCrop(224)                           one random crop of the net's input size
    RandomFlip()                              horizontal flip with probability 1/2
    ColourShift(stats)                        AlexNet's PCA lighting, sigma 0.1
    SubtractMean(stats.mean)                  the only preprocessing the paper does

Images stay uint8 until ColourShift, which returns float32 (pixel units, 0..255, not clipped).
``colour_stats(images)`` computes the mean RGB value and the eigen-decomposition of the 3x3
covariance of the pixel colours. ``train_transform`` and ``eval_transform`` build the pipelines.
Taught in ``notebooks/04_data_and_augmentation.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image


def _check_image(img, who: str) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.ndim != 3:
        raise ValueError(f"{who}: expected one HWC image array (H, W, C), got {getattr(img, 'shape', type(img))}")
    return img


def rescaled_shape(h: int, w: int, S: int) -> tuple[int, int]:
    """(H', W') with the smaller side exactly S and the aspect ratio kept (rounded)."""
    if h <= w:
        return S, max(1, round(w * S / h))
    return max(1, round(h * S / w)), S


def rescale(img: np.ndarray, S: int) -> np.ndarray:
    """Isotropic rescale so that the smaller side is S (bilinear, antialiased when shrinking; PIL)."""
    img = _check_image(img, "rescale")
    H, W, C = img.shape
    OH, OW = rescaled_shape(H, W, int(S))
    if (OH, OW) == (H, W):
        return img
    if img.dtype == np.uint8 and C in (1, 3):
        pil = Image.fromarray(img[..., 0] if C == 1 else img)
        out = np.asarray(pil.resize((OW, OH), Image.BILINEAR))
        return out.reshape(OH, OW, C)
    # other dtypes / channel counts: resize each channel as a 32-bit float image
    chans = [np.asarray(Image.fromarray(img[..., c].astype(np.float32), mode="F").resize((OW, OH), Image.BILINEAR))
             for c in range(C)]
    return np.stack(chans, axis=2).astype(img.dtype if img.dtype.kind == "f" else np.float32)


def hflip(img: np.ndarray) -> np.ndarray:
    """Mirror left-right (a view; applying it twice gives the image back)."""
    return _check_image(img, "hflip")[:, ::-1]


def crop(img: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """The size x size window whose top-left pixel is (top, left)."""
    H, W = img.shape[:2]
    if not (0 <= top <= H - size and 0 <= left <= W - size):
        raise ValueError(f"crop: a {size}x{size} window at ({top}, {left}) does not fit in a {H}x{W} image")
    return img[top:top + size, left:left + size]


class Compose:
    """Apply transforms in order, passing the same generator along."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, img, rng=None):
        for t in self.transforms:
            img = t(img, rng)
        return img

    def __repr__(self):
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"


class Rescale:
    """Single-scale training/testing: the smaller side becomes S (the paper uses S = 256 or 384)."""

    def __init__(self, S: int):
        if int(S) < 1:
            raise ValueError(f"Rescale: S must be positive, got {S}")
        self.S = int(S)

    def __call__(self, img, rng=None):
        return rescale(img, self.S)

    def __repr__(self):
        return f"Rescale({self.S})"


class ScaleJitter:
    """Multi-scale training: S drawn uniformly per image from [S_min, S_max] (paper: [256, 512])."""

    def __init__(self, S_min: int = 256, S_max: int = 512):
        if not 1 <= int(S_min) <= int(S_max):
            raise ValueError(f"ScaleJitter: need 1 <= S_min <= S_max, got [{S_min}, {S_max}]")
        self.S_min, self.S_max = int(S_min), int(S_max)

    def __call__(self, img, rng):
        return rescale(img, int(rng.integers(self.S_min, self.S_max + 1)))

    def __repr__(self):
        return f"ScaleJitter({self.S_min}, {self.S_max})"


class RandomCrop:
    """One size x size crop at a uniformly random position (every position equally likely)."""

    def __init__(self, size: int = 224):
        self.size = int(size)

    def __call__(self, img, rng):
        H, W = _check_image(img, "RandomCrop").shape[:2]
        if H < self.size or W < self.size:
            raise ValueError(f"RandomCrop: a {self.size}x{self.size} crop needs an image at least that big, "
                             f"got {H}x{W} (rescale first)")
        return crop(img, int(rng.integers(H - self.size + 1)), int(rng.integers(W - self.size + 1)), self.size)

    def __repr__(self):
        return f"RandomCrop({self.size})"


class CenterCrop:
    """The central size x size crop (for evaluation)."""

    def __init__(self, size: int = 224):
        self.size = int(size)

    def __call__(self, img, rng=None):
        H, W = _check_image(img, "CenterCrop").shape[:2]
        if H < self.size or W < self.size:
            raise ValueError(f"CenterCrop: a {self.size}x{self.size} crop needs an image at least that big, "
                             f"got {H}x{W}")
        return crop(img, (H - self.size) // 2, (W - self.size) // 2, self.size)

    def __repr__(self):
        return f"CenterCrop({self.size})"


class RandomFlip:
    """Horizontal flip with probability p."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, img, rng):
        return hflip(img) if rng.random() < self.p else img

    def __repr__(self):
        return f"RandomFlip(p={self.p})"


@dataclass
class ColourStats:
    """Mean colour and principal axes of a dataset's pixel colours (pixel units, 0..255).

    mean (C,); eigvals (C,) variances along the axes, descending; eigvecs (C, C), column i is axis i.
    """

    mean: np.ndarray
    eigvals: np.ndarray
    eigvecs: np.ndarray


def colour_stats(images, max_pixels: int = 2_000_000, seed: int = 0) -> ColourStats:
    """Mean RGB and PCA of the pixel colours of ``images`` (an (N, H, W, C) array or a list of HWC images).

    The mean is exact over every pixel of an array; the 3x3 covariance comes from at most
    ``max_pixels`` pixels drawn uniformly (seeded). For a list of images of different sizes the
    mean is weighted by area and each image gives the covariance the same number of pixels.
    """
    rng = np.random.default_rng(seed)
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"colour_stats: expected images (N, H, W, C), got shape {images.shape}")
        flat = images.reshape(-1, images.shape[-1])
        mean = flat.mean(axis=0, dtype=np.float64)
        sample = flat if len(flat) <= max_pixels else flat[rng.choice(len(flat), max_pixels, replace=False)]
    else:  # a list, or a lazy sequence of decoded files: one pass, bounded memory
        sums, count, parts = 0.0, 0, []
        per_image = max(1, max_pixels // max(len(images), 1))
        for i in range(len(images)):
            img = np.asarray(images[i])
            flat = img.reshape(-1, img.shape[-1])
            sums = sums + flat.sum(axis=0, dtype=np.float64)
            count += len(flat)
            parts.append(flat if len(flat) <= per_image else flat[rng.choice(len(flat), per_image, replace=False)])
        mean = sums / count
        sample = np.concatenate(parts)
    cov = np.atleast_2d(np.cov(sample.astype(np.float64), rowvar=False))
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1]
    eigvecs = eigvecs[:, order]
    eigvecs *= np.where(eigvecs.sum(axis=0) < 0, -1, 1)  # sign convention: axes point towards +RGB
    return ColourStats(mean=mean.astype(np.float32), eigvals=np.maximum(eigvals[order], 0).astype(np.float32),
                       eigvecs=eigvecs.astype(np.float32))


class ColourShift:
    """AlexNet's PCA colour augmentation: add sum_i alpha_i * sqrt(lambda_i) * p_i to every pixel.

    p_i, lambda_i are the eigenvectors and eigenvalues of the training set's 3x3 colour covariance,
    alpha_i ~ N(0, sigma^2) drawn once per image (sigma = 0.1). AlexNet writes "alpha_i lambda_i";
    we scale by sqrt(lambda_i), the standard deviation along the axis, so the shift is in pixel
    units whatever the pixel range (with 0..255 pixels a typical shift is a few grey levels).
    Returns float32, not clipped.
    """

    def __init__(self, stats: ColourStats, sigma: float = 0.1):
        self.eigvecs = np.asarray(stats.eigvecs, np.float32)
        self.std = np.sqrt(np.asarray(stats.eigvals, np.float32))
        self.sigma = float(sigma)

    def shift(self, rng) -> np.ndarray:
        """The (C,) colour offset for one image."""
        alpha = rng.normal(0.0, self.sigma, size=self.std.shape)
        return (self.eigvecs @ (alpha * self.std)).astype(np.float32)

    def __call__(self, img, rng):
        img = _check_image(img, "ColourShift")
        if img.shape[-1] != len(self.std):
            raise ValueError(f"ColourShift: stats are for {len(self.std)} channels, image has shape {img.shape}")
        return img.astype(np.float32) + self.shift(rng)

    def __repr__(self):
        return f"ColourShift(sigma={self.sigma})"


class SubtractMean:
    """Subtract the training set's mean colour (Sect. 2.1: the only preprocessing). Returns float32."""

    def __init__(self, mean):
        self.mean = np.asarray(mean, np.float32).reshape(-1)

    def __call__(self, img, rng=None):
        return np.asarray(img, np.float32) - self.mean

    def __repr__(self):
        return f"SubtractMean({[round(float(m), 2) for m in self.mean]})"


class GreyToRGB:
    """Repeat a one-channel image to three channels (RGB images pass through)."""

    def __call__(self, img, rng=None):
        img = _check_image(img, "GreyToRGB")
        return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img

    def __repr__(self):
        return "GreyToRGB()"


def train_transform(crop: int = 224, S=256, stats: ColourStats | None = None, flip: bool = True,
                    sigma: float = 0.1) -> Compose:
    """The paper's training pipeline: rescale to S (an int) or jitter S in [S_min, S_max] (a pair),
    random crop, flip, and — given the training set's colour stats — PCA colour shift and mean subtraction."""
    steps = [ScaleJitter(*S) if isinstance(S, (tuple, list)) else Rescale(S), RandomCrop(crop)]
    if flip:
        steps.append(RandomFlip())
    if stats is not None:
        if sigma > 0:
            steps.append(ColourShift(stats, sigma))
        steps.append(SubtractMean(stats.mean))
    return Compose(steps)


def eval_transform(crop: int = 224, Q: int = 256, stats: ColourStats | None = None) -> Compose:
    """Test-time pipeline for one crop: rescale to Q, central crop, mean subtraction."""
    steps = [Rescale(Q), CenterCrop(crop)]
    if stats is not None:
        steps.append(SubtractMean(stats.mean))
    return Compose(steps)
