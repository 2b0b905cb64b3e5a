"""One holdout rule: ``datasets.holdout_split``, used by the array datasets and by ``rundata``'s image folders."""

from __future__ import annotations

import numpy as np
import pytest

from vggedu.data import datasets
from vggedu.data.datasets import holdout_split
from vggedu.rundata import load_split


def test_holdout_split_is_a_seeded_partition():
    train, val = holdout_split(50, 7, seed=3)
    assert len(val) == 7 and len(train) == 43
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(50))
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
    again = holdout_split(50, 7, seed=3)
    assert np.array_equal(again[1], val) and np.array_equal(again[0], train)
    assert not np.array_equal(holdout_split(50, 7, seed=4)[1], val)
    with pytest.raises(ValueError, match="holdout must be between 1 and 49, got 50"):
        holdout_split(50, 50)
    with pytest.raises(ValueError, match="got 0"):
        holdout_split(50, 0)


def test_array_datasets_and_image_folders_hold_out_the_same_images(tmp_path):
    """Fashion-MNIST/CIFAR-10 (``datasets._holdout``) and a folder without splits (``rundata.load_split``)
    pick the same indices for the same number of images, holdout and seed."""
    from PIL import Image

    n, k, seed = 40, 4, 5
    for c in range(2):
        (tmp_path / "pics" / f"class{c}").mkdir(parents=True)
        for i in range(n // 2):
            Image.fromarray(np.full((8, 8, 3), 10 * i + c, np.uint8)).save(tmp_path / "pics" / f"class{c}" / f"{i}.png")
    data = f"folder:{tmp_path / 'pics'}"
    whole = datasets.load_dataset(data, "train")
    index = np.arange(n)
    arrays_val = datasets._holdout(index, index, "val", "train", k, seed)[1]
    arrays_train = datasets._holdout(index, index, "train", "train", k, seed)[1]
    folder_val = load_split(data, "val", size=8, holdout=k, seed=seed)
    folder_train = load_split(data, "train", size=8, holdout=k, seed=seed)
    assert folder_val.files == [whole.files[i] for i in arrays_val]
    assert folder_train.files == [whole.files[i] for i in arrays_train]
    assert np.array_equal(arrays_val, holdout_split(n, k, seed)[1])
