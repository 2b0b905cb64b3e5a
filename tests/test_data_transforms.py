"""Each augmentation transform keeps its promise (Sect. 3.1 of the paper), and the colour statistics."""

from __future__ import annotations

import numpy as np
import pytest

from vggedu.data import (
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
    eval_transform,
    hflip,
    rescale,
    train_transform,
)


def photo(h=60, w=90, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


@pytest.mark.parametrize("h, w, c", [(60, 90, 3), (90, 60, 3), (75, 75, 3), (37, 101, 1)])
@pytest.mark.parametrize("S", [32, 64, 256])
def test_rescale_makes_the_smaller_side_S_and_keeps_the_aspect(h, w, c, S):
    out = Rescale(S)(photo(h, w, c), None)
    assert min(out.shape[:2]) == S and out.shape[2] == c and out.dtype == np.uint8
    long_in, long_out = max(h, w), max(out.shape[:2])
    assert abs(long_out - long_in * S / min(h, w)) <= 0.5


def test_rescale_of_float_images_and_of_a_constant():
    img = np.full((10, 20, 3), 7.5, np.float32)
    out = rescale(img, 30)
    assert out.shape == (30, 60, 3) and out.dtype == np.float32 and np.allclose(out, 7.5)


def test_scale_jitter_draws_S_per_image_within_the_range():
    jitter, img = ScaleJitter(40, 60), photo(50, 80)
    sides = [min(jitter(img, np.random.default_rng(s)).shape[:2]) for s in range(200)]
    assert min(sides) >= 40 and max(sides) <= 60 and len(set(sides)) > 15
    assert min(sides) <= 42 and max(sides) >= 58  # the ends of the range are reached
    with pytest.raises(ValueError, match="S_min"):
        ScaleJitter(300, 200)


def test_random_crop_stays_in_bounds_and_reaches_every_edge():
    H, W, size = 7, 9, 4
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    img = np.stack([rows, cols, np.zeros((H, W), int)], axis=2)  # each pixel holds its own coordinates
    tops, lefts = [], []
    for s in range(300):
        out = RandomCrop(size)(img, np.random.default_rng(s))
        top, left = out[0, 0, 0], out[0, 0, 1]
        assert out.shape == (size, size, 3)
        assert np.array_equal(out, img[top:top + size, left:left + size])
        tops.append(top)
        lefts.append(left)
    assert set(tops) == set(range(H - size + 1)) and set(lefts) == set(range(W - size + 1))
    with pytest.raises(ValueError, match="4x4 crop"):
        RandomCrop(size)(img[:3], np.random.default_rng(0))


def test_center_crop_is_central():
    img = photo(10, 14)
    assert np.array_equal(CenterCrop(6)(img), img[2:8, 4:10])


def test_flip_is_involutive_and_random_flip_flips_about_half():
    img = photo()
    assert np.array_equal(hflip(hflip(img)), img)
    assert np.array_equal(hflip(img)[:, 0], img[:, -1])
    flips = [not np.array_equal(RandomFlip()(img, np.random.default_rng(s)), img) for s in range(400)]
    assert 0.4 < np.mean(flips) < 0.6


@pytest.fixture(scope="module")
def coloured():
    """Images whose colours vary along made-up axes with standard deviations 40, 15, 5: a known PCA."""
    rng = np.random.default_rng(3)
    axes, _ = np.linalg.qr(np.array([[0.8, 0.5, 0.33], [0.5, -0.7, 0.2], [0.1, 0.3, -0.9]]).T)
    t = rng.normal(0, 1, (50, 16, 16, 3)) * [40, 15, 5]
    pix = 128 + t @ axes.T
    return np.clip(pix, 0, 255).astype(np.uint8), axes[:, 0]


def test_colour_stats_match_an_independent_pca(coloured):
    images, axis = coloured
    stats = colour_stats(images)
    flat = images.reshape(-1, 3).astype(np.float64)
    assert np.allclose(stats.mean, flat.mean(0), atol=1e-3)
    vals, vecs = np.linalg.eigh(np.cov(flat.T))
    assert np.allclose(stats.eigvals, vals[::-1], rtol=1e-4)
    assert np.allclose(np.abs(stats.eigvecs.T @ vecs[:, ::-1]), np.eye(3), atol=1e-4)
    assert abs(stats.eigvecs[:, 0] @ axis) > 0.99 and np.allclose(np.sqrt(stats.eigvals), [40, 15, 5], rtol=0.05)
    listed = colour_stats(list(images))  # a list of images gives the same answer
    assert np.allclose(listed.mean, stats.mean, atol=1e-3) and np.allclose(listed.eigvals, stats.eigvals, rtol=1e-4)


def test_colour_shift_is_one_offset_along_the_computed_eigenvectors(coloured):
    images, _ = coloured
    stats = colour_stats(images)
    shift = ColourShift(stats, sigma=0.1)
    img = images[0]
    out = shift(img, np.random.default_rng(7))
    delta = (out - img.astype(np.float32)).reshape(-1, 3)
    assert out.dtype == np.float32 and np.allclose(delta, delta[0], atol=1e-4)  # same offset on every pixel
    # the offset is sum_i alpha_i sqrt(lambda_i) p_i with alpha ~ N(0, 0.1^2) from the same generator
    alpha = np.random.default_rng(7).normal(0, 0.1, 3)
    assert np.allclose(delta[0], stats.eigvecs @ (alpha * np.sqrt(stats.eigvals)), atol=1e-3)
    # over many images the offsets spread along the data's eigenvectors with variance sigma^2 lambda
    offsets = np.stack([shift.shift(np.random.default_rng(s)) for s in range(4000)]).astype(np.float64)
    vals, vecs = np.linalg.eigh(np.cov(offsets.T))
    assert np.allclose(np.abs(np.diag(stats.eigvecs.T @ vecs[:, ::-1])), 1, atol=0.02)
    assert np.allclose(vals[::-1], 0.01 * stats.eigvals, rtol=0.1)


def test_colour_shift_of_grey_data_only_changes_brightness():
    grey = np.repeat(np.random.default_rng(0).integers(0, 256, (20, 8, 8, 1), dtype=np.uint8), 3, axis=3)
    stats = colour_stats(grey)
    delta = ColourShift(stats)(grey[0], np.random.default_rng(1))[0, 0] - grey[0, 0, 0]
    assert abs(delta[0]) > 0.1 and np.allclose(delta, delta[0], atol=1e-3)


def test_subtract_mean_centres_the_data(coloured):
    images, _ = coloured
    stats = colour_stats(images)
    centred = np.stack([SubtractMean(stats.mean)(img) for img in images])
    assert centred.dtype == np.float32 and np.abs(centred.reshape(-1, 3).mean(0)).max() < 1e-3


def test_grey_to_rgb():
    grey = photo(5, 6, 1)
    rgb = GreyToRGB()(grey)
    assert rgb.shape == (5, 6, 3) and all(np.array_equal(rgb[..., c], grey[..., 0]) for c in range(3))
    assert GreyToRGB()(rgb) is rgb


def test_same_seed_same_output_for_the_whole_pipeline(coloured):
    stats = colour_stats(coloured[0])
    t = train_transform(crop=48, S=(56, 96), stats=stats)
    img = photo(120, 80)
    a, b = t(img, np.random.default_rng(5)), t(img, np.random.default_rng(5))
    assert a.shape == (48, 48, 3) and a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a, t(img, np.random.default_rng(6)))
    assert [type(s).__name__ for s in t.transforms] == ["ScaleJitter", "RandomCrop", "RandomFlip", "ColourShift",
                                                        "SubtractMean"]
    e = eval_transform(crop=48, Q=64, stats=stats)
    assert np.array_equal(e(img), e(img)) and e(img).shape == (48, 48, 3)


def test_compose_applies_in_order_and_bad_input_is_named():
    t = Compose([Rescale(20), CenterCrop(10)])
    assert t(photo(40, 60), None).shape == (10, 10, 3)
    with pytest.raises(ValueError, match=r"\(4, 5\)"):
        Rescale(10)(np.zeros((4, 5), np.uint8), None)
    with pytest.raises(ValueError, match="3 channels"):
        ColourShift(ColourStats(np.zeros(3), np.ones(3), np.eye(3)))(photo(4, 4, 1), np.random.default_rng(0))
