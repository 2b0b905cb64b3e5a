"""``vggedu predict``, ``vggedu.features.extract`` and ``vggedu features`` end to end on small weight files."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import weightwriters as ww
from PIL import Image

from vggedu import build_vgg, cli, save_checkpoint
from vggedu import features as F
from vggedu import pretrained as P
from vggedu.evaluate import dense_scores
from vggedu.models import Preprocessing

SMALL = dict(config="D", width=1 / 16, fc_width=16, num_classes=10, input_size=64)
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """A small random VGG-16 as a .caffemodel (no optional reader needed), and two photos-to-be."""
    folder = tmp_path_factory.mktemp("predict")
    path = ww.write_caffe(ww.TorchLayout(**SMALL, seed=21), folder / "VGG_ILSVRC_16_layers.caffemodel")
    rng = np.random.default_rng(0)
    files = []
    for i, (h, w) in enumerate([(90, 120), (150, 100)]):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"photo{i}.png")
        files.append(folder / f"photo{i}.png")
    return path, files


def test_predict_prints_top_k_with_probabilities(small_file, capsys):
    path, files = small_file
    assert cli.main(["predict", *map(str, files), "--weights", str(path), "--top", "3", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    model = P.load(path)
    from vggedu.data.datasets import read_image

    for line, f in zip(lines, files):
        probs = P.classify(model, read_image(f))
        assert line["image"] == str(f) and len(line["top"]) == 3
        assert [t["class"] for t in line["top"]] == list(np.argsort(-probs)[:3])
        np.testing.assert_allclose([t["prob"] for t in line["top"]], np.sort(probs)[::-1][:3], rtol=1e-6)
    assert cli.main(["predict", str(files[0]), "--weights", str(path), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "BGR, mean (103.939, 116.779, 123.68) (caffe convention)" in out and str(files[0]) in out
    assert len([line for line in out.splitlines() if line.startswith("  ")]) == 2


def test_centre_crop_is_the_forward_of_the_preprocessed_crop(small_file):
    model = P.load(small_file[0])
    img = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    want = P.softmax(model.forward(model.preprocess(img[None])))[0]
    np.testing.assert_allclose(P.classify(model, img, "center", [64]), want, rtol=1e-6)
    big = np.random.default_rng(4).integers(0, 256, (80, 128, 3), dtype=np.uint8)  # rescaled to 64 x 102
    from vggedu.data.transforms import CenterCrop, rescale

    crop = CenterCrop(64)(rescale(big, 64))
    np.testing.assert_allclose(P.classify(model, big, "center", [64]),
                               P.softmax(model.forward(model.preprocess(crop[None])))[0], rtol=1e-6)
    two = P.classify(model, big, "center", [64, 96])
    np.testing.assert_allclose(two, (P.classify(model, big, "center", [64]) + P.classify(model, big, "center",
                                                                                        [96])) / 2, rtol=1e-6)


def test_dense_uses_lesson_07s_evaluation(small_file, capsys):
    model = P.load(small_file[0])
    left = np.random.default_rng(5).integers(0, 256, (64, 32, 3), dtype=np.uint8)
    mirror = np.concatenate([left, left[:, ::-1]], axis=1)  # flip-symmetric: dense at Q = 64 is the centre crop
    np.testing.assert_allclose(P.classify(model, mirror, "dense", [64]), P.classify(model, mirror, "center", [64]),
                               rtol=1e-5, atol=1e-7)  # float32 posteriors: the tiny ones underflow to 0
    img = np.random.default_rng(6).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    probs, _ = dense_scores(model, model.preprocess(img[None])[0], 96, flip=True)
    np.testing.assert_allclose(P.classify(model, img, "dense", [96]), probs, rtol=1e-6, atol=1e-7)
    path, files = small_file
    assert cli.main(["predict", str(files[1]), "--weights", str(path), "--method", "dense", "--scales", "64", "96",
                     "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    assert len(top) == 5 and top[0]["prob"] >= top[-1]["prob"]


def test_predict_names_imagenet_classes_and_reads_checkpoints(tmp_path, capsys, shared_data):
    path = ww.write_caffe(ww.TorchLayout(**dict(SMALL, num_classes=1000)), tmp_path / "net.caffemodel")
    photo = next((shared_data / "imagenet" / "samples").glob("n01440764_*"))  # a tench
    assert cli.main(["predict", str(photo), "--weights", str(path), "--top", "1", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["top"][0]
    assert top["name"] == P.imagenet_class_names()[top["class"]]
    # a vggedu checkpoint keeps the imported convention and names
    ckpt = save_checkpoint(tmp_path / "imported.npz", P.load(path))
    assert cli.main(["predict", str(photo), "--weights", str(ckpt), "--top", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top"][0] == top


def test_predict_refusals(small_file, tmp_path, capsys):
    path, files = small_file
    assert cli.main(["predict", str(files[0]), "--weights", str(tmp_path / "none.pth")]) == 1
    assert "none.pth does not exist" in capsys.readouterr().err
    assert cli.main(["predict", str(files[0]), "--weights", str(path), "--scales", "32"]) == 1
    assert "scale Q=32 is smaller than the net's input size 64" in capsys.readouterr().err
    (tmp_path / "cut.caffemodel").write_bytes(path.read_bytes()[:1000])
    assert cli.main(["predict", str(files[0]), "--weights", str(tmp_path / "cut.caffemodel")]) == 1
    assert "cut.caffemodel: is not a complete Caffe NetParameter" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- features


def test_features_shapes_norms_and_flip(small_file):
    model = P.load(small_file[0])
    rng = np.random.default_rng(7)
    imgs = [rng.integers(0, 256, (70, 90, 3), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]
    avg = F.extract(model, imgs, scales=(64, 96))
    stack = F.extract(model, imgs, scales=(64, 96), combine="stack")
    assert avg.shape == (2, 16) and stack.shape == (2, 32) and avg.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(avg, axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(stack, axis=1), 1, rtol=1e-6)
    flipped = [img[:, ::-1] for img in imgs]
    np.testing.assert_allclose(F.extract(model, flipped, scales=(64, 96)), avg, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(F.extract(model, imgs, scales=(64,)), F.extract(model, imgs, 64, combine="stack"))
    # one scale, stacked: the blocks are the per-scale descriptors (up to the final normalisation)
    per = [F.extract(model, imgs, scales=(q,)) for q in (64, 96)]
    for i in range(2):
        blocks = stack[i].reshape(2, 16)
        for s in range(2):
            np.testing.assert_allclose(blocks[s] / np.linalg.norm(blocks[s]), per[s][i], rtol=1e-5, atol=1e-6)


def test_features_are_relu7_without_fc8(small_file):
    """At Q = the input size the dense map is 1x1: the descriptor is relu7 of the plain net (and its flip)."""
    model = P.load(small_file[0])
    img = np.random.default_rng(8).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = model.preprocess(np.stack([img, img[:, ::-1]]))
    for layer in model.net.layers:
        x = layer.forward(x)
        if layer.name == "relu7":
            break
    want = x.mean(axis=0)
    np.testing.assert_allclose(F.extract(model, [img], scales=(64,))[0], want / np.linalg.norm(want), rtol=1e-5)
    arr = F.extract(model, img[None], scales=(64,))  # an (N, H, W, C) array works too
    np.testing.assert_allclose(arr[0], want / np.linalg.norm(want), rtol=1e-5)


def test_features_refusals(small_file):
    model = P.load(small_file[0])
    img = np.zeros((1, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="each must be at least the net's input size 64"):
        F.extract(model, img, scales=(32,))
    with pytest.raises(ValueError, match="unknown combine 'sum'"):
        F.extract(model, img, 64, combine="sum")
    bare = build_vgg("tiny", num_classes=10, input_size=32)
    with pytest.raises(ValueError, match="has no preprocessing"):
        F.extract(bare, np.zeros((1, 32, 32, 3), np.uint8), 32)
    bare.preprocessing = Preprocessing("RGB", 1 / 255, (0.5, 0.5, 0.5), (1, 1, 1), "test")
    assert F.extract(bare, np.zeros((1, 32, 32, 3), np.uint8), 32).shape == (1, 32)


def test_features_of_another_layer(small_file):
    model = P.load(small_file[0])
    imgs = np.random.default_rng(9).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert F.extract(model, imgs, (64,), layer="pool5").shape == (2, 32)  # conv5_3's 32 channels, averaged
    assert F.extract(model, imgs, (64, 96), combine="stack", layer="relu6").shape == (2, 32)
    with pytest.raises(ValueError, match="has no layer 'fc9'"):
        F.extract(model, imgs, (64,), layer="fc9")
    with pytest.raises(ValueError, match="no images"):
        F.extract(model, imgs[:0], (64,))


@pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn is not installed (pip install 'vggedu[features]')")
def test_svm_accuracy_and_pixels():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    assert F.svm_accuracy(x[:150], y[:150], x[150:], y[150:]) > 0.9  # C cross-validated
    assert F.svm_accuracy(x[:150], y[:150], x[150:], y[150:], C=1.0) > 0.9
    assert F.svm_accuracy(x[:4], np.array([0, 1, 0, 1]), x[150:], y[150:]) >= 0  # 2 per class: 2 folds
    px = F.pixel_features(rng.integers(0, 256, (4, 8, 8, 1), dtype=np.uint8))
    assert px.shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(px, axis=1), 1, rtol=1e-6)


@pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn is not installed (pip install 'vggedu[features]')")
def test_features_command_end_to_end(small_file, tmp_path, capsys):
    path, _ = small_file
    out = tmp_path / "feats.npz"
    assert cli.main(["features", "--weights", str(path), "--data", "shapes", "--images", "40", "--scales", "64", "80",
                     "--out", str(out), "--svm"]) == 0
    text = capsys.readouterr().out
    with np.load(out, allow_pickle=False) as npz:
        assert npz["train_features"].shape == (40, 16) and npz["test_features"].shape == (40, 16)
        assert npz["train_labels"].shape == (40,) and list(npz["scales"]) == [64, 80]
    report = json.loads(text.splitlines()[-1])
    assert 0 <= report["test_accuracy"] <= 1 and report["combine"] == "average"
    assert cli.main(["features", "--weights", str(path), "--data", "shapes", "--images", "8", "--classes", "0", "1",
                     "--splits", "test", "--combine", "stack", "--scales", "64", "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as npz:
        assert npz["test_features"].shape == (8, 16) and set(npz["test_labels"]) <= {0, 1}


def test_features_on_a_trained_checkpoint(tmp_path):
    """A vggedu-trained checkpoint (grey images, its mean and scale in meta) gives features without an import."""
    model = build_vgg("tiny", num_classes=4, input_size=32, in_channels=1, init="he", seed=0)
    path = save_checkpoint(tmp_path / "best.npz", model, meta={"input": {"mean": [40.0], "scale": 1 / 255, "size": 32},
                                                                 "classes": ["a", "b", "c", "d"]})
    from vggedu.commands.predict import load_weights

    loaded = load_weights(path)
    assert loaded.class_names == ["a", "b", "c", "d"] and loaded.preprocessing.source == "vggedu"
    imgs = np.random.default_rng(1).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_allclose(loaded.preprocess(imgs[:, :1, :1]), (imgs[:, :1, :1] - 40.0) / 255, rtol=1e-5)
    assert F.extract(loaded, imgs, scales=(32, 48)).shape == (3, 32)


def test_predict_and_features_on_the_device(xp, small_file):
    """A model on the GPU gives the CPU's posteriors and features, returned as NumPy arrays."""
    cpu, model = P.load(small_file[0]), P.load(small_file[0])
    if xp is not np:
        model.to("gpu")
    img = np.random.default_rng(10).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    for method in ("center", "dense"):
        got = P.classify(model, img, method, [64, 80])
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, P.classify(cpu, img, method, [64, 80]), rtol=1e-5, atol=1e-7)
    feats = F.extract(model, [img, img[:64, :64]], (64, 80))
    assert isinstance(feats, np.ndarray)
    np.testing.assert_allclose(feats, F.extract(cpu, [img, img[:64, :64]], (64, 80)), rtol=1e-5, atol=1e-6)
