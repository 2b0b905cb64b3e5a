"""The test protocol (vggedu.evaluate): FC layers as convolutions and dense evaluation (Sect. 3.2)."""

from __future__ import annotations

import numpy as np
import pytest

from vggedu import build_vgg, nn
from vggedu.evaluate import (
    FullyConvolutional,
    check_scale,
    dense_scores,
    score_map_side,
    softmax,
    to_fully_convolutional,
)

# tiny at 96x96: pool5 is 3x3, so fc6 becomes a real 3x3 convolution whose (h, w, c) order matters
SMALL = dict(num_classes=7, input_size=96, fc_width=16, init="he", seed=3)


def _image(size=96, channels=3, seed=0, dtype=np.float32, width=None):
    shape = (size, width or size, channels)
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _oracle_softmax(scores):
    """Softmax written out independently of vggedu (float64 throughout)."""
    s = np.asarray(scores, np.float64)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _float64(model):
    for layer in model.net:
        layer.params = {k: v.astype(np.float64) for k, v in layer.params.items()}
    return model


def test_conversion_keeps_names_and_reshapes_the_fc_weights_as_views():
    model = build_vgg("tiny", **SMALL)
    fcn = to_fully_convolutional(model)
    assert isinstance(fcn, nn.Sequential) and isinstance(fcn, FullyConvolutional)
    assert [m.name for m in fcn] == [m.name for m in model.net if m.name != "flatten"]
    assert [m.name for m in fcn][-8:] == ["pool5", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    assert all(not m.training for m in fcn)
    fc6, fc7, fc8 = fcn["fc6"], fcn["fc7"], fcn["fc8"]
    assert all(isinstance(m, nn.Conv2d) for m in (fc6, fc7, fc8))
    assert fc6.params["W"].shape == (3, 3, 32, 16) and (fc6.pad, fc6.stride) == (0, 1)  # pool5 is 3x3x32
    assert fc7.params["W"].shape == (1, 1, 16, 16) and fc8.params["W"].shape == (1, 1, 16, 7)
    for name in ("fc6", "fc7", "fc8"):  # the same numbers, not copies: a reshape of the FC weight
        W = model.params[f"{name}.W"]
        assert np.shares_memory(fcn[name].params["W"], W)
        np.testing.assert_array_equal(fcn[name].params["W"].reshape(W.shape), W)
        assert fcn[name].params["b"] is model.params[f"{name}.b"]
    # row (h, w, c) of fc6.W is the kernel tap (h, w) on channel c
    h, w, c = 2, 1, 5
    np.testing.assert_array_equal(fc6.params["W"][h, w, c], model.params["fc6.W"][(h * 3 + w) * 32 + c])
    for name in ("conv1_1", "conv3_2"):
        assert fcn[name].params["W"] is model.params[f"{name}.W"]
    model.params["fc6.W"][0, 0] = 123.0  # in-place updates reach the converted net
    assert fc6.params["W"][0, 0, 0, 0] == 123.0
    with pytest.raises(RuntimeError, match="testing only"):
        fcn.train()


@pytest.mark.parametrize("flip", [False, True])
def test_dense_scores_on_an_input_size_image_equal_the_fc_nets_softmax_float32(flip):
    model = build_vgg("tiny", **SMALL)
    image = _image()
    probs, score_map = dense_scores(model, image, 96, flip=flip)
    assert probs.shape == (7,) and score_map.shape == (1, 1, 7) and probs.dtype == np.float32
    batch = np.stack([image, image[:, ::-1]]) if flip else image[None]
    want = _oracle_softmax(model.forward(batch)).mean(axis=0)
    np.testing.assert_allclose(probs, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(score_map[0, 0], _oracle_softmax(model.forward(image[None]))[0], rtol=0, atol=1e-5)
    assert abs(float(probs.sum()) - 1) < 1e-5


def test_dense_scores_on_an_input_size_image_equal_the_fc_nets_softmax_float64():
    model = _float64(build_vgg("tiny", **SMALL))
    image = _image(dtype=np.float64)
    probs, score_map = dense_scores(model, image, 96, flip=True)
    assert probs.dtype == np.float64
    want = _oracle_softmax(model.forward(np.stack([image, image[:, ::-1]]))).mean(axis=0)
    np.testing.assert_allclose(probs, want, rtol=0, atol=1e-10)


def test_every_score_map_position_is_the_fc_head_on_its_pool5_window():
    """Independent of the conversion: run the conv layers to pool5, apply fc6-fc8 as matrices to each window."""
    model = _float64(build_vgg("tiny", **SMALL))
    fcn = to_fully_convolutional(model)
    x = _image(160, dtype=np.float64, width=192)[None]  # pool5 5x6 -> score map 3x4
    scores = fcn.forward(x)
    assert scores.shape == (1, 3, 4, 7)
    a = x
    for layer in model.net:
        if layer.name == "flatten":
            break
        a = layer.forward(a)
    assert a.shape == (1, 5, 6, 32)
    P = model.params
    for i in range(3):
        for j in range(4):
            v = a[0, i:i + 3, j:j + 3, :].reshape(-1)  # (h, w, c) order, as Flatten makes it
            v = np.maximum(v @ P["fc6.W"] + P["fc6.b"], 0)
            v = np.maximum(v @ P["fc7.W"] + P["fc7.b"], 0)
            np.testing.assert_allclose(scores[0, i, j], v @ P["fc8.W"] + P["fc8.b"], rtol=1e-10, atol=1e-12)


def test_a_224_d_gives_2x2_maps_at_256_and_6x6_at_384():
    model = build_vgg("D", num_classes=5, input_size=224, width=1 / 64, fc_width=8, init="he")  # narrow: fast
    fcn = to_fully_convolutional(model)
    assert fcn["fc6"].params["W"].shape[:2] == (7, 7)  # the paper's 7x7 conv
    image = _image(224)
    for Q, side in ((256, 2), (384, 6)):
        probs, score_map = dense_scores(fcn, image, Q)
        assert score_map.shape == (side, side, 5) and probs.shape == (5,)
        assert score_map_side(Q, 224) == side == Q // 32 - 6
    # a non-square image: the smaller side becomes Q, the other keeps the aspect ratio
    _, score_map = dense_scores(fcn, _image(224, width=336), 256, flip=False)  # 256 x 384
    assert score_map.shape == (2, 6, 5)


@pytest.mark.parametrize("Q", [224, 225, 240, 255, 256, 288, 300, 320, 352, 416, 448, 480, 512])
def test_the_score_map_side_rule(Q):
    """Q/32 - 6 for a 224 net (floor(Q/32) - 6 when 32 does not divide Q: the pools floor), checked
    against the shapes the fully convolutional net really makes (a 1-channel D, zeros: shapes only)."""
    assert score_map_side(Q, 224) == Q // 32 - 6
    fcn = to_fully_convolutional(build_vgg("D", num_classes=2, input_size=224, width=1 / 512, fc_width=1,
                                           init="zeros"))
    assert fcn.forward(np.zeros((1, Q, Q, 3), np.float32)).shape == (1, Q // 32 - 6, Q // 32 - 6, 2)


def test_layers_run_up_to_relu7_give_very_deep_features():
    model = build_vgg("tiny", **SMALL)
    fcn = to_fully_convolutional(model)
    x = _image(128)[None]
    for layer in fcn:
        x = layer.forward(x)
        if layer.name == "relu7":
            break
    assert x.shape == (1, 2, 2, 16) and float(x.min()) >= 0


def test_softmax_is_stable_and_sums_to_one():
    p = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(p.sum(axis=1), 1)
    np.testing.assert_allclose(p[1], _oracle_softmax([1.0, 2.0, 3.0]))


def test_bad_inputs_are_refused_with_clear_messages():
    model = build_vgg("tiny", **SMALL)
    with pytest.raises(ValueError, match="smaller than the net's input size 96"):
        dense_scores(model, _image(), 64)
    for bad in (96.5, "96", True):
        with pytest.raises(ValueError, match="whole number"):
            check_scale(bad, 96)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        dense_scores(model, _image(channels=1), 96)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        dense_scores(model, _image()[None], 96)
    with pytest.raises(TypeError, match="float"):
        dense_scores(model, np.zeros((96, 96, 3), np.uint8), 96)
    with pytest.raises(ValueError, match="smaller than the net's input size"):
        to_fully_convolutional(model).forward(np.zeros((1, 64, 128, 3), np.float32))
