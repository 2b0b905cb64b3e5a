"""The test protocol (vggedu.evaluate): FC layers as convolutions, dense evaluation, multi-crop, scales, fusion
(Sect. 3.2), and ``vggedu evaluate`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vggedu import build_vgg, nn, save_checkpoint
from vggedu.cli import main
from vggedu.evaluate import (
    FullyConvolutional,
    PosteriorCache,
    TestNet,
    center_scores,
    check_scale,
    crop_grid,
    dataset_posteriors,
    default_scales,
    dense_scores,
    fuse,
    load_test_net,
    multicrop_scores,
    multiscale_scores,
    protocol_error,
    rescaled,
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


# --- multi-crop, scales, fusion ---------------------------------------------------------------------------


def _recording(model):
    """Make ``model.forward`` record every batch it is given (a copy), and return that list."""
    seen, original = [], model.forward

    def forward(x, train=False):
        seen.append(np.array(x))
        return original(x, train=train)

    model.forward = forward
    return seen


def test_multicrop_makes_50_crops_per_scale_on_a_5x5_grid_covering_the_corners_each_flipped():
    model = build_vgg("tiny", **SMALL)
    seen = _recording(model)
    image = _image(120, width=150)
    probs = multicrop_scores(model, image, 128)  # 128 x 160 after rescaling
    assert len(seen) == 1 and seen[0].shape == (50, 96, 96, 3)  # one batch: 25 crops, then their 25 mirror images
    positions = crop_grid(128, 160, 96, 5)
    assert len(positions) == 25 == len(set(positions))
    tops, lefts = sorted({t for t, _ in positions}), sorted({left for _, left in positions})
    assert len(tops) == len(lefts) == 5
    assert {(0, 0), (0, 64), (32, 0), (32, 64)} <= set(positions)  # the four corners: 128 - 96 = 32, 160 - 96 = 64
    big = rescaled(image, 128)
    assert big.shape == (128, 160, 3)
    crops, flips = seen[0][:25], seen[0][25:]
    for k, (t, left) in enumerate(positions):
        np.testing.assert_array_equal(crops[k], big[t:t + 96, left:left + 96])
        np.testing.assert_array_equal(flips[k], crops[k][:, ::-1])
    want = _oracle_softmax(type(model).forward(model, seen[0])).mean(axis=0)  # the unrecorded forward
    np.testing.assert_allclose(probs, want, rtol=0, atol=1e-6)
    # without flips: the 25 crops only; three scales: 3 batches of 50
    seen.clear()
    multicrop_scores(model, image, 128, flip=False)
    assert [b.shape[0] for b in seen] == [25]
    seen.clear()
    multiscale_scores(model, image, (96, 112, 128), method="multicrop")
    assert [b.shape[0] for b in seen] == [50, 50, 50]


def test_all_methods_agree_on_an_input_size_image_float64():
    """At Q = input_size every crop is the whole image: centre = multi-crop = dense = the FC net's softmax."""
    model = _float64(build_vgg("tiny", **SMALL))
    image = _image(96, dtype=np.float64)
    want = _oracle_softmax(model.forward(np.stack([image, image[:, ::-1]]))).mean(axis=0)
    for probs in (dense_scores(model, image, 96)[0], multicrop_scores(model, image, 96),
                  center_scores(model, image, 96)):
        np.testing.assert_allclose(probs, want, rtol=0, atol=1e-10)


def test_multiscale_averages_the_scales_and_fuse_averages_posteriors():
    model = _float64(build_vgg("tiny", **SMALL))
    image = _image(100, dtype=np.float64)
    per_scale = [dense_scores(model, image, Q)[0] for Q in (96, 128, 160)]
    np.testing.assert_allclose(multiscale_scores(model, image, (96, 128, 160)), np.mean(per_scale, axis=0),
                               rtol=0, atol=1e-12)
    p = np.array([0.2, 0.8])
    np.testing.assert_array_equal(fuse([p]), p)
    np.testing.assert_allclose(fuse([p, np.array([0.6, 0.4])]), [0.4, 0.6])
    np.testing.assert_allclose(fuse(p, np.array([0.6, 0.4])), [0.4, 0.6])
    np.testing.assert_array_equal(fuse(p), p)
    with pytest.raises(ValueError, match="different shapes"):
        fuse([p, np.ones(3) / 3])
    with pytest.raises(ValueError, match="no posteriors"):
        fuse([])


def test_default_scales_are_the_papers():
    assert default_scales(256) == (224, 256, 288)
    assert default_scales(384) == (352, 384, 416)
    assert default_scales(S_range=(256, 512)) == (256, 384, 512)
    assert default_scales(40, input_size=32) == (35, 40, 45)  # the step scales with the input size: 32 * 32/224
    assert default_scales(32, input_size=32) == (32, 37)  # never below the input size
    with pytest.raises(ValueError, match="either S"):
        default_scales(256, (256, 512))


def test_dataset_posteriors_equal_the_per_image_functions():
    model = build_vgg("tiny", **SMALL)
    net = TestNet(model, mean=[100.0, 110.0, 120.0], scale=1 / 255)
    images = np.random.default_rng(1).integers(0, 256, (5, 110, 110, 3), dtype=np.uint8)
    prepared = net.prepare(images)
    for method, one in (("center", center_scores), ("multicrop", multicrop_scores),
                        ("dense", lambda m, x, Q: dense_scores(m, x, Q)[0])):
        got = dataset_posteriors(net, images, method, 128, batch_size=2)
        assert got.shape == (5, 7)
        want = np.stack([one(model, x, 128) for x in prepared])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def _tiny_checkpoint(path, seed=3):
    model = build_vgg("tiny", **{**SMALL, "input_size": 32, "num_classes": 10, "seed": seed})
    meta = {"input": {"mean": [120.0, 115.0, 110.0], "scale": 1 / 255}, "train_config": {"data": "shapes"}}
    return save_checkpoint(path, model, meta=meta)


def test_fusion_of_a_checkpoint_with_itself_equals_that_checkpoint(tmp_path):
    path = _tiny_checkpoint(tmp_path / "a.npz")
    a, b = load_test_net(path), load_test_net(path)
    images = np.random.default_rng(0).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    labels = np.arange(6)
    cache = PosteriorCache(images)
    for method in ("center", "dense", "dense+multicrop"):
        alone = protocol_error(a, labels, method, (32, 40), cache)
        fused = protocol_error([a, b], labels, method, (32, 40), cache)
        np.testing.assert_allclose(fused["probs"], alone["probs"], rtol=0, atol=1e-12)
        assert (fused["top1_err"], fused["top5_err"]) == (alone["top1_err"], alone["top5_err"])


def test_vggedu_evaluate_prints_one_table_end_to_end(tmp_path, capsys):
    a, b = _tiny_checkpoint(tmp_path / "a.npz", seed=1), _tiny_checkpoint(tmp_path / "b.npz", seed=2)
    args = ["evaluate", "--checkpoint", str(a), "--checkpoint", str(b), "--data", "shapes", "--images", "20",
            "--method", "center,dense", "--method", "multicrop", "--method", "dense+multicrop",
            "--scales", "32", "--scales", "32,40,48"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "| net | method | test scales Q | top-1 err (%) | top-5 err (%) | images | seconds |"
    rows = [line.split(" | ") for line in out[3:]]
    assert len(rows) == 3 * 4 * 2  # (a, b, their fusion) x 4 methods x 2 scale sets
    assert [r[1] for r in rows[:8]] == ["center"] * 2 + ["dense"] * 2 + ["multicrop"] * 2 + ["dense+multicrop"] * 2
    assert [r[2] for r in rows[:2]] == ["32", "32, 40, 48"] and all(r[5] == "20" for r in rows)
    assert rows[-1][0].startswith("| fusion of ")
    assert main([*args[:9], "--method", "dense", "--scales", "32,40", "--json", "--no-flip"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 3 and all(0 <= r["top5_err"] <= r["top1_err"] <= 1 and r["n"] == 20 for r in records)
    assert records[0]["flip"] is False and records[1]["scales"] == [32, 40] and records[2]["config"] == "tiny+tiny"
    assert main(["evaluate", "--checkpoint", str(a), "--scales", "16"]) != 0
    assert "smaller than the net's input size 32" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(a), "--method", "tencrop"]) != 0
    assert "unknown test method 'tencrop'" in capsys.readouterr().err


def test_run_data_training_scale_range_and_validation_scale():
    """Fixed S, jittered S and the validation scale that bench/paper_tables.py and lesson 07 train with."""
    from vggedu.data import RandomCrop, Rescale, ScaleJitter
    from vggedu.data.datasets import load_dataset
    from vggedu.rundata import RunData

    ds = load_dataset("shapes", "val", size=80, n=10)
    fixed = RunData("shapes", ds, ds, 32, S_range=(40, 40), eval_Q=40).train_transform().transforms
    jittered = RunData("shapes", ds, ds, 32, S_range=(40, 80)).train_transform().transforms
    assert isinstance(fixed[0], Rescale) and fixed[0].S == 40 and isinstance(fixed[1], RandomCrop)
    assert isinstance(jittered[0], ScaleJitter) and (jittered[0].S_min, jittered[0].S_max) == (40, 80)
    x, _ = next(iter(RunData("shapes", ds, ds, 32, S_range=(40, 40), eval_Q=40).eval_batches(ds, 10)))
    want = ds.images[0]
    from vggedu.data.transforms import rescale

    np.testing.assert_array_equal(x[0], rescale(want, 40)[4:36, 4:36].astype(np.float32))
    with pytest.raises(ValueError, match="S_range"):
        RunData("shapes", ds, ds, 32, S_range=(50, 40))
