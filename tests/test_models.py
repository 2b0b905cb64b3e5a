"""build_vgg: names, layouts, forward/loss, initialisers, seeding, and a PyTorch twin giving the same scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vggedu import build_vgg
from vggedu.configs import layer_table
from vggedu.gradcheck import rel_error

SMALL = dict(num_classes=10, input_size=32, width=0.125, fc_width=32)  # cheap members of the family


def _x(n=4, size=32, channels=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, size, size, channels), dtype=np.float32)


def test_params_use_the_paper_names_and_the_library_layout():
    model = build_vgg("D", **SMALL)
    names = [k[: -len(".W")] for k in model.params if k.endswith(".W")]
    assert names == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1",
                     "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7", "fc8"]
    assert set(model.params) == {f"{n}.{k}" for n in names for k in "Wb"}
    assert model.params["conv1_1.W"].shape == (3, 3, 3, 8)  # (KH, KW, C, F)
    assert model.params["conv3_1.W"].shape == (3, 3, 16, 32)
    assert model.params["fc6.W"].shape == (64, 32)  # (D, M): D = 1*1*64 at 32x32
    assert model.params["fc8.b"].shape == (10,)
    assert all(p.dtype == np.float32 for p in model.params.values())
    assert model.params["conv1_1.W"] is model.net["conv1_1"].params["W"]  # same objects: SGD updates reach the net
    assert model.net["conv1_1"].need_input_grad is False


def test_summary_matches_the_net_and_its_arrays():
    model = build_vgg("C", **SMALL)
    rows = model.summary()
    assert rows == layer_table("C", 10, 32, 0.125, 32)
    assert [r["name"] for r in rows] == [m.name for m in model.net]
    for row in rows:
        layer = model.net[row["name"]]
        assert row["params"] == sum(p.size for p in layer.params.values()), row["name"]
    assert sum(r["params"] for r in rows) == model.num_params()
    assert model.spec() == dict(config="C", width=0.125, input_size=32, num_classes=10, fc_width=32, in_channels=3,
                                dropout=0.5)
    assert "VGG(config='C'" in repr(model)


def test_one_full_size_model_has_the_exact_count():
    model = build_vgg("D")  # 138M parameters, about 550 MB: the one full-size build in the tests
    assert model.num_params() == 138_357_544
    assert model.params["fc6.W"].shape == (7 * 7 * 512, 4096)
    w = model.params["fc6.W"]
    assert abs(float(w[:2000].std()) - 0.01) < 1e-4 and float(np.abs(model.params["fc6.b"]).max()) == 0.0
    del model


def test_forward_loss_predict():
    model = build_vgg("tiny", input_size=32, num_classes=10)
    x, y = _x(), np.array([0, 3, 9, 2])
    scores = model.forward(x)
    assert scores.shape == (4, 10) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores, model.forward(x))  # eval mode: no dropout
    assert model.net.training is False
    loss, grads = model.loss(x, y)
    assert model.net.training is True
    assert math.isfinite(loss) and abs(loss - math.log(10)) < 0.1  # tiny random weights: near-uniform scores
    assert set(grads) == set(model.params)
    assert all(grads[k].shape == model.params[k].shape for k in grads)
    pred = model.predict(x, batch_size=3)
    assert pred.shape == (4,) and np.array_equal(pred, scores.argmax(axis=1))


def test_dropout_only_in_training():
    model = build_vgg("tiny", input_size=32, num_classes=10, init="he", seed=1)
    x = _x()
    a, b = model.forward(x, train=True), model.forward(x, train=True)
    assert not np.allclose(a, b)  # fresh dropout masks
    drop = model.net["drop6"]
    assert drop.p == 0.5 and drop.rng is model.dropout_rng is model.net["drop7"].rng
    no_drop = build_vgg("tiny", input_size=32, num_classes=10, init="he", seed=1, dropout=0.0)
    np.testing.assert_array_equal(no_drop.forward(x, train=True), no_drop.forward(x))


def test_loss_gradients_match_finite_differences():
    """Whole-model check in float64 (dropout off): every parameter tensor, a few entries each."""
    model = build_vgg("tiny", input_size=32, num_classes=5, init="he", seed=3, dropout=0.0)
    for layer in model.net:
        for k in layer.params:
            layer.params[k] = layer.params[k].astype(np.float64)
            if k == "b":
                layer.params[k] += np.random.default_rng(4).standard_normal(layer.params[k].shape) * 0.1
    x, y = _x(2, seed=2).astype(np.float64), np.array([1, 4])
    _, grads = model.loss(x, y)
    grads = {k: v.copy() for k, v in grads.items()}
    rng, h = np.random.default_rng(5), 1e-6
    for name, p in model.params.items():
        flat = p.reshape(-1)
        for i in rng.choice(flat.size, size=min(3, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + h
            plus = model.loss(x, y)[0]
            flat[i] = old - h
            minus = model.loss(x, y)[0]
            flat[i] = old
            numeric = (plus - minus) / (2 * h)
            assert rel_error(numeric, grads[name].reshape(-1)[i]) < 1e-5 or abs(numeric - grads[name].reshape(-1)[i]) < 1e-9, name


def test_initialisers_have_their_documented_statistics():
    knobs = dict(num_classes=10, input_size=32, width=0.5, fc_width=256)
    paper = build_vgg("A", init="paper", **knobs)
    w = paper.params["conv4_1.W"]  # 3x3x128x256 = 295k draws
    assert abs(float(w.std()) - 0.01) < 2e-4 and abs(float(w.mean())) < 1e-4
    assert all(float(np.abs(paper.params[k]).max()) == 0.0 for k in paper.params if k.endswith(".b"))

    glorot = build_vgg("A", init="glorot", **knobs)
    w = glorot.params["conv4_1.W"]
    a = math.sqrt(6 / (9 * 128 + 9 * 256))
    assert float(np.abs(w).max()) <= a and abs(float(w.std()) - a / math.sqrt(3)) < 0.02 * a

    he = build_vgg("A", init="he", **knobs)
    w = he.params["conv4_1.W"]
    assert abs(float(w.std()) - math.sqrt(2 / (9 * 128))) < 0.01 * math.sqrt(2 / (9 * 128))
    assert abs(float(he.params["fc6.W"].std()) - math.sqrt(2 / 256)) < 0.02 * math.sqrt(2 / 256)

    zeros = build_vgg("A", init="zeros", **knobs)
    assert all(float(np.abs(p).max()) == 0.0 for p in zeros.params.values())


def test_seeded_and_reproducible():
    a, b, c = (build_vgg("B", **SMALL, init="he", seed=s) for s in (7, 7, 8))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["conv1_1.W"], c.params["conv1_1.W"])
    x, y = _x(), np.arange(4)
    assert a.loss(x, y)[0] == b.loss(x, y)[0]  # the same dropout masks too


@pytest.mark.parametrize("config", ["A", "a-lrn", "B", "c", "D", "E", "tiny"])
def test_every_config_builds_and_runs(config):
    model = build_vgg(config, num_classes=7, input_size=32, width=0.0625, fc_width=16)
    assert model.forward(_x(2)).shape == (2, 7)


def test_grey_images_and_bad_inputs():
    model = build_vgg("tiny", input_size=32, num_classes=10, in_channels=1)
    assert model.forward(_x(2, channels=1)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"expects x of shape \(N, 32, 32, 1\).*\(2, 32, 32, 3\)"):
        model.forward(_x(2))
    with pytest.raises(ValueError, match="NHWC"):
        model.forward(_x(2, channels=1).transpose(0, 3, 1, 2))
    with pytest.raises(TypeError, match="floating-point"):
        model.forward(np.zeros((1, 32, 32, 1), np.uint8))
    with pytest.raises(ValueError, match="unknown VGG config 'VGG16'"):
        build_vgg("VGG16")
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        build_vgg("tiny", init="xavier")
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        build_vgg("tiny", widht=2)
    with pytest.raises(ValueError, match="dropout"):
        build_vgg("tiny", dropout=1.0)


def test_model_on_each_backend(xp):
    model = build_vgg("tiny", input_size=32, num_classes=10, init="he", seed=2)
    x = _x(2)
    expected = model.forward(x)
    if xp is not np:
        model.to("gpu")
        assert model.device == "gpu"
    scores = model.forward(xp.asarray(x))
    np.testing.assert_allclose(xp.asnumpy(scores) if xp is not np else scores, expected, rtol=1e-4, atol=1e-6)
    loss, grads = model.loss(xp.asarray(x), xp.asarray(np.arange(2)))
    assert math.isfinite(float(loss)) and type(grads["fc8.W"]) is type(model.params["fc8.W"])


# ----------------------------------------------------------------------------- the PyTorch twin

# torchvision's VGG tables (models/vgg.py), written out independently of vggedu's: ints are 3x3 convs,
# "M" a 2x2 max-pool; ("1x1", c) is config C's 1x1 conv and "LRN" A-LRN's normalisation.
TORCH_CFGS = {
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, ("1x1", 256), "M", 512, 512, ("1x1", 512), "M",
          512, 512, ("1x1", 512), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def _torch_vgg(torch, cfg, width, size, fc_width, classes):
    tnn, mods, c = torch.nn, [], 3
    for v in cfg:
        if v == "M":
            mods.append(tnn.MaxPool2d(2, 2))
        elif v == "LRN":
            mods.append(tnn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
        else:
            k, f = (1, v[1]) if isinstance(v, tuple) else (3, v)
            f = round(f * width)
            mods += [tnn.Conv2d(c, f, k, padding=k // 2), tnn.ReLU()]
            c = f
    side = size // 32
    mods += [tnn.Flatten(), tnn.Linear(c * side * side, fc_width), tnn.ReLU(), tnn.Dropout(0.5),
             tnn.Linear(fc_width, fc_width), tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(fc_width, classes)]
    return tnn.Sequential(*mods)


@pytest.mark.parametrize("config", list(TORCH_CFGS))
def test_same_scores_as_the_equivalent_pytorch_net(config):
    torch = pytest.importorskip("torch")
    width, size, fc_width, classes = 0.125, 64, 32, 10
    model = build_vgg(config, num_classes=classes, input_size=size, width=width, fc_width=fc_width, init="he", seed=0)
    for k in model.params:
        if k.endswith(".b"):  # non-zero biases, so a bias mix-up would show
            model.params[k][...] = np.random.default_rng(len(k)).standard_normal(model.params[k].shape) * 0.1
    twin = _torch_vgg(torch, TORCH_CFGS[config], width, size, fc_width, classes).eval()
    ours = [k[:-2] for k in model.params if k.endswith(".W")]
    theirs = [m for m in twin if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(ours) == len(theirs)
    H = Wd = size // 32
    C = model.params["fc6.W"].shape[0] // (H * Wd)
    with torch.no_grad():
        for name, m in zip(ours, theirs):
            W, b = model.params[f"{name}.W"], model.params[f"{name}.b"]
            if name.startswith("conv"):
                t = W.transpose(3, 2, 0, 1)  # (KH, KW, C, F) -> (F, C, KH, KW)
            elif name == "fc6":  # rows in (h, w, c) order -> torch's (c, h, w) flatten order, as (out, in)
                t = W.reshape(H, Wd, C, -1).transpose(3, 2, 0, 1).reshape(W.shape[1], -1)
            else:
                t = W.T
            assert tuple(m.weight.shape) == t.shape, name
            m.weight.copy_(torch.from_numpy(np.ascontiguousarray(t)))
            m.bias.copy_(torch.from_numpy(b))
        x = _x(3, size=size, seed=9)
        expected = twin(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    scores = model.forward(x)
    assert np.abs(expected).max() > 1e-3  # a real signal, not all zeros
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5 * float(np.abs(expected).max()))


def test_numpy_integers_are_accepted_and_the_spec_stays_plain_python():
    model = build_vgg("tiny", num_classes=np.int64(10), input_size=np.int32(32), fc_width=np.int64(8))
    spec = model.spec()
    assert spec["num_classes"] == 10 and type(spec["num_classes"]) is int and type(spec["input_size"]) is int
    assert type(spec["fc_width"]) is int and type(spec["width"]) is float
