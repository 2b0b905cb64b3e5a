"""The embedded ``shapes`` dataset: deterministic, any resolution, boxes, sizes, and hard for a linear model."""

from __future__ import annotations

import numpy as np
import pytest

from vggedu.data import load_dataset
from vggedu.data.shapes import CLASSES, generate


@pytest.fixture(scope="module")
def train():
    return load_dataset("shapes", "train", n=2000)


def test_layout_and_balance(train):
    assert train.images.shape == (2000, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and train.boxes.shape == (2000, 4)
    assert train.classes == list(CLASSES) and len(train.classes) == 10
    assert np.bincount(train.labels, minlength=10).tolist() == [200] * 10  # blocks of 250 are balanced
    assert len(load_dataset("shapes", "val")) == 1000 and len(load_dataset("shapes", "test", n=10)) == 10


def test_same_seed_same_images_other_seed_or_split_different(train):
    again = load_dataset("shapes", "train", n=300)
    assert np.array_equal(again.images, train.images[:300])  # also: a smaller dataset is a prefix
    assert np.array_equal(again.boxes, train.boxes[:300])
    other = load_dataset("shapes", "train", n=300, seed=1)
    assert not np.array_equal(other.labels, again.labels)
    val, test = load_dataset("shapes", "val", n=300), load_dataset("shapes", "test", n=300)
    assert not np.array_equal(val.labels, again.labels) and not np.array_equal(val.labels, test.labels)
    flat = {img.tobytes() for img in train.images} | {img.tobytes() for img in val.images}
    assert len(flat) == 2300  # no image shared between splits


def test_boxes_are_inside_the_image_and_sizes_vary_by_3x(train):
    x0, y0, x1, y1 = train.boxes.T
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 32).all() and (y1 <= 32).all()
    assert (x1 > x0).all() and (y1 > y0).all()
    extent = np.maximum(x1 - x0, y1 - y0)
    assert extent.max() / extent.min() >= 3


@pytest.mark.parametrize("size", [16, 64, 224])
def test_any_resolution_draws_the_same_scenes(train, size):
    images, labels, boxes = generate(20, size)
    assert images.shape == (20, size, size, 3)
    assert np.array_equal(labels, train.labels[:20])
    # the same object, measured in image fractions, up to a pixel at the coarser resolution
    assert np.abs(boxes / size - train.boxes[:20] / 32).max() <= 1.5 / min(size, 32)


def test_object_differs_from_background():
    images, labels, boxes = generate(40, 64)
    for img, (x0, y0, x1, y1) in zip(images.astype(float), boxes):
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        inside = img[y0:y1, x0:x1].reshape(-1, 3)
        assert np.abs(inside - border.mean(0)).sum(1).max() > 60  # some of the box is clearly not background


def test_a_linear_classifier_on_pixels_does_badly(train):
    test = load_dataset("shapes", "test", n=1000)

    def features(images):
        return np.c_[images.reshape(len(images), -1) / 255.0, np.ones(len(images))]

    A, Y = features(train.images), np.eye(10)[train.labels]
    W = np.linalg.solve(A.T @ A + 10.0 * np.eye(A.shape[1]), A.T @ Y)  # ridge least squares
    train_acc = (np.argmax(A @ W, 1) == train.labels).mean()
    test_acc = (np.argmax(features(test.images) @ W, 1) == test.labels).mean()
    assert train_acc > 0.5  # it can memorise the training set ...
    assert test_acc < 0.3  # ... but not generalise (chance is 0.1; a 6-conv net reached 0.97 trained on 5000)


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        generate(10, size=8)
    with pytest.raises(ValueError, match="split"):
        generate(10, split="holdout")
    with pytest.raises(ValueError, match="n must"):
        generate(-1)
