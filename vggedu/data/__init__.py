"""Data: the embedded ``shapes`` dataset, real datasets with checksums, the paper's augmentation, a loader.

- ``shapes``      ten classes of generated objects with boxes, any resolution, no files
- ``download``    the cache folder ($VGGEDU_DATA, default ~/.cache/vggedu), MD5 checks, atomic downloads
- ``datasets``    ``load_dataset(name, split, root, size, seed)``: shapes, fashion-mnist, cifar10,
                  folder:PATH, imagenet-samples
- ``transforms``  rescale (S or jittered S), random crop, flip, PCA colour shift, mean subtraction;
                  ``colour_stats`` computes the mean RGB and the colour eigenvectors
- ``loader``      ``DataLoader``: shuffled, prefetched, exactly resumable batches

Taught in ``notebooks/04_data_and_augmentation.ipynb``.
"""

from .datasets import Dataset, ImageFiles, load_dataset, read_idx, read_image
from .download import data_root
from .loader import DataLoader
from .transforms import (
    CenterCrop,
    ColourShift,
    ColourStats,
    Compose,
    GreyToRGB,
    RandomCrop,
    RandomFlip,
    Rescale,
    ScaleJitter,
    SubtractMean,
    colour_stats,
    crop,
    eval_transform,
    hflip,
    rescale,
    train_transform,
)

__all__ = [
    "CenterCrop", "ColourShift", "ColourStats", "Compose", "DataLoader", "Dataset", "GreyToRGB", "ImageFiles",
    "RandomCrop", "RandomFlip", "Rescale", "ScaleJitter", "SubtractMean", "colour_stats", "crop", "data_root",
    "eval_transform", "hflip", "load_dataset", "read_idx", "read_image", "rescale", "train_transform",
]
