"""vggedu.pretrained: every released layout read into vggedu's, checked against each source's own forward pass.

Weight files cannot be downloaded here, so the tests write random-weight files in each published
layout (``tests/weightwriters.py``, which does not import vggedu) and compare the imported net's
``forward(preprocess(images))`` with the logits the source framework's convention computes: small
nets for every variant of every format, and one full-size VGG-16 per format (written once per session).
"""

from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pytest
import weightwriters as ww

from vggedu import layers as L
from vggedu import load_checkpoint, save_checkpoint
from vggedu import pretrained as P
from vggedu import weightfiles as wf

HAS = {m: importlib.util.find_spec(m) is not None for m in ("scipy", "h5py", "safetensors", "torch", "google")}
if HAS["google"]:
    HAS["google"] = importlib.util.find_spec("google.protobuf") is not None


def needs(module):
    return pytest.mark.skipif(not HAS[module], reason=f"{module} is not installed (pip install 'vggedu[pretrained]')")


SMALL = dict(config="D", width=1 / 16, fc_width=16, num_classes=10, input_size=64)  # pool5 is 2x2: order matters


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def images(n=2, size=64, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def check(model, imgs, expected, tol=1e-4):
    got = model.forward(model.preprocess(imgs))
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert rel(got, expected) < tol, rel(got, expected)


# ------------------------------------------------------------------------------------------ small files

WRITERS = {  # variant -> (needed module, write(net, path) -> path, oracle(net, images, path_info))
    "safetensors": ("safetensors", lambda net, p: ww.write_safetensors(net, p.with_suffix(".safetensors")), "torch"),
    "pth-zip": ("torch", lambda net, p: ww.write_pth(net, p.with_suffix(".pth")), "torch"),
    "pth-legacy": ("torch", lambda net, p: ww.write_pth(net, p.with_suffix(".pth"), legacy=True), "torch"),
    "caffe-v1-wire": (None, lambda net, p: ww.write_caffe(net, p.with_suffix(".caffemodel"), v1=True), "caffe"),
    "caffe-layer-wire": (None, lambda net, p: ww.write_caffe(net, p.with_suffix(".caffemodel"), v1=False), "caffe"),
    "caffe-v1-protobuf": ("google", lambda net, p: ww.write_caffe_protobuf(net, p.with_suffix(".caffemodel"), True),
                          "caffe"),
    "caffe-layer-protobuf": ("google", lambda net, p: ww.write_caffe_protobuf(net, p.with_suffix(".caffemodel")),
                             "caffe"),
    "keras-release": ("h5py", lambda net, p: ww.write_keras(net, p.with_suffix(".h5"), "release"), "keras"),
    "keras2-save-weights": ("h5py", lambda net, p: ww.write_keras(net, p.with_suffix(".h5"), "keras2"), "keras"),
    "matconvnet-pixel": ("scipy", lambda net, p: ww.write_matconvnet(net, p.with_suffix(".mat"))[0], "matconvnet"),
    "matconvnet-image": ("scipy", lambda net, p: ww.write_matconvnet(net, p.with_suffix(".mat"), "image")[0],
                         "matconvnet-image"),
}


def oracle(kind, net, imgs):
    """The logits the source framework's convention gives for uint8 RGB ``imgs``."""
    if kind == "torch":
        return ww.caffe_forward(net, ww.torch_input(imgs))  # torchvision computes exactly as Caffe, on its input
    if kind == "caffe":
        return ww.caffe_forward(net, ww.caffe_input(imgs))
    if kind == "keras":
        convs, fcs = net.keras_arrays()
        return ww.keras_forward(convs, fcs, net.blocks, ww.keras_input(imgs))
    convs, fcs = net.matconvnet_arrays()
    if kind == "matconvnet":
        avg = np.array([122.74, 114.94, 101.64], np.float32)
    else:  # the full average image the writer stored (same generator)
        avg = (110 + 20 * np.random.default_rng(7).random((net.input_size, net.input_size, 3))).astype(np.float32)
    return ww.matconvnet_forward(convs, fcs, net.blocks, ww.matconvnet_input(imgs, avg))


@pytest.mark.parametrize("variant", sorted(WRITERS))
def test_small_file_gives_the_source_logits(variant, tmp_path):
    module, write, kind = WRITERS[variant]
    if module and not HAS[module]:
        pytest.skip(f"{module} is not installed")
    net = ww.TorchLayout(**SMALL, seed=3)
    path = write(net, tmp_path / "vgg16")
    model = P.load(path)
    assert (model.config, model.num_classes, model.input_size, model.width, model.fc_width) == ("D", 10, 64, 1 / 16, 16)
    imgs = images()
    check(model, imgs, oracle(kind, net, imgs))
    if variant == "pth-zip":  # and the real framework agrees with the numpy oracle
        torch = pytest.importorskip("torch")
        with torch.no_grad():
            ref = ww.torch_net(net)(torch.from_numpy(ww.torch_input(imgs))).numpy()
        check(model, imgs, ref)


@pytest.mark.parametrize("config", ["E", "A"])
def test_config_is_inferred(config, tmp_path):
    net = ww.TorchLayout(**dict(SMALL, config=config), seed=4)
    path = ww.write_caffe(net, tmp_path / "net.caffemodel")
    model = P.load(path)
    assert model.config == config
    imgs = images(1)
    check(model, imgs, oracle("caffe", net, imgs))


@needs("safetensors")
def test_formats_are_detected_from_the_bytes(tmp_path):
    net = ww.TorchLayout(**SMALL)
    assert P.detect_format(ww.write_safetensors(net, tmp_path / "a.safetensors")) == "safetensors"
    assert P.detect_format(ww.write_caffe(net, tmp_path / "a.caffemodel")) == "caffe"
    renamed = tmp_path / "weights.bin"
    (tmp_path / "a.safetensors").rename(renamed)
    assert P.load(renamed).config == "D"
    if HAS["h5py"]:
        assert P.detect_format(ww.write_keras(net, tmp_path / "a.h5")) == "keras"
    if HAS["scipy"]:
        assert P.detect_format(ww.write_matconvnet(net, tmp_path / "a.mat")[0]) == "matconvnet"
    if HAS["torch"]:
        assert P.detect_format(ww.write_pth(net, tmp_path / "a.pth")) == "torchvision"
        assert P.detect_format(ww.write_pth(net, tmp_path / "b.pth", legacy=True)) == "torchvision"
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"x\.txt: cannot tell its format"):
        P.load(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="unknown weight format 'onnx'"):
        P.load(tmp_path / "a.caffemodel", format="onnx")
    with pytest.raises(FileNotFoundError, match="missing.pth does not exist"):
        P.load(tmp_path / "missing.pth")


# --------------------------------------------------------------------------- orientation, by hand


def _two_layer_reference():
    """A 4x4x2 image, a 3x3 conv 2 -> 2 channels with ONE non-zero tap, an FC 32 -> 3 with ONE non-zero weight.

    The tap: out channel 0 at (y, x) = in channel 1 at (y - 1, x + 1), i.e. kernel row 0, column 2
    (correlation, as every framework here computes). The FC weight: output 2 = the conv map at
    (h=1, w=2, c=0). So logit 2 = image[y=0, x=3, c=1], by hand."""
    x = np.arange(32, dtype=np.float32).reshape(1, 4, 4, 2) + 1  # NHWC, all values distinct
    expected = np.array([[0.5, -0.25, x[0, 0, 3, 1] + 2.0]], np.float32)  # fc biases 0.5, -0.25, 2
    return x, expected


def _two_layer_forward(conv_w, conv_b, fc_w, fc_b, x):
    out, _ = L.conv_forward(x, conv_w, conv_b, stride=1, pad=1)
    out = out.reshape(1, -1)  # (h, w, c) order: vggedu's
    return out @ fc_w + fc_b


def test_hand_made_two_layer_files_catch_transposes():
    x, expected = _two_layer_reference()
    conv_b, fc_b = np.zeros(2, np.float32), np.array([0.5, -0.25, 2.0], np.float32)
    # as PyTorch/Caffe store them: conv (F, C, KH, KW), fc (out, in) over the (c, h, w)-flattened map
    conv_oihw = np.zeros((2, 2, 3, 3), np.float32)
    conv_oihw[0, 1, 0, 2] = 1
    fc_chw = np.zeros((3, 2, 4, 4), np.float32)  # (out, c, h, w)
    fc_chw[2, 0, 1, 2] = 1
    fc_chw = fc_chw.reshape(3, 32)
    # as Keras/MatConvNet store them: conv (KH, KW, C, F), fc (in, out) over the (h, w, c) map
    conv_hwio = np.zeros((3, 3, 2, 2), np.float32)
    conv_hwio[0, 2, 1, 0] = 1
    fc_hwc = np.zeros((4, 4, 2, 3), np.float32)
    fc_hwc[1, 2, 0, 2] = 1

    W = P.conv_to_hwio(conv_oihw, "OIHW")
    np.testing.assert_array_equal(W, conv_hwio)
    got = _two_layer_forward(W, conv_b, P.fc_to_in_out(fc_chw, "out,in(chw)", (4, 4, 2)), fc_b, x)
    np.testing.assert_array_equal(got, expected)
    got = _two_layer_forward(P.conv_to_hwio(conv_hwio, "HWIO"), conv_b, P.fc_to_in_out(fc_hwc.reshape(32, 3),
                             "in(hwc),out"), fc_b, x)
    np.testing.assert_array_equal(got, expected)
    got = _two_layer_forward(conv_hwio, conv_b, P.fc_to_in_out(fc_hwc, "conv"), fc_b, x)  # MatConvNet: 4x4 conv
    np.testing.assert_array_equal(got, expected)
    # the mistakes this guards against give other numbers
    wrong = {
        "kernel rows/columns swapped": (conv_oihw.transpose(3, 2, 1, 0), P.fc_to_in_out(fc_chw, "out,in(chw)", (4, 4, 2))),
        "in/out channels swapped": (conv_oihw.transpose(2, 3, 0, 1), P.fc_to_in_out(fc_chw, "out,in(chw)", (4, 4, 2))),
        "fc6 columns taken as (h, w, c)": (W, np.ascontiguousarray(fc_chw.T)),
    }
    for mistake, (cw, fw) in wrong.items():
        assert not np.array_equal(_two_layer_forward(np.ascontiguousarray(cw), conv_b, fw, fc_b, x), expected), mistake


@needs("safetensors")
def test_hand_made_two_layer_file_through_a_reader(tmp_path):
    """The same two layers in a real file (torchvision keys), through the reader and the conversion."""
    from safetensors.numpy import save_file

    x, expected = _two_layer_reference()
    conv = np.zeros((2, 2, 3, 3), np.float32)
    conv[0, 1, 0, 2] = 1
    fc = np.zeros((3, 2, 4, 4), np.float32)
    fc[2, 0, 1, 2] = 1
    save_file({"features.0.weight": conv, "features.0.bias": np.zeros(2, np.float32),
               "classifier.0.weight": fc.reshape(3, 32), "classifier.0.bias": np.array([0.5, -0.25, 2], np.float32)},
              str(tmp_path / "two.safetensors"))
    raw = wf.read_safetensors(tmp_path / "two.safetensors")
    assert [(r.name, r.kind) for r in raw.layers] == [("features.0", "conv"), ("classifier.0", "fc")]
    cw = P.conv_to_hwio(raw.layers[0].W, P.CONV_LAYOUT["safetensors"])
    fw = P.fc_to_in_out(raw.layers[1].W, P.FC_LAYOUT["safetensors"], (4, 4, 2))
    np.testing.assert_array_equal(_two_layer_forward(cw, raw.layers[0].b, fw, raw.layers[1].b, x), expected)
    with pytest.raises(ValueError, match=r"two\.safetensors: does not hold a VGG: its 1 conv layers"):
        P.load(tmp_path / "two.safetensors")


# --------------------------------------------------------------------------- preprocessing and names


def test_preprocess_follows_each_source():
    px = np.array([[[[10, 20, 30]]]], np.uint8)  # one RGB pixel
    caffe = P.preprocessing_for("caffe")(px)
    np.testing.assert_allclose(caffe[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)
    np.testing.assert_array_equal(P.preprocessing_for("keras")(px), caffe)
    torch_like = P.preprocessing_for("torchvision")(px)
    want = (np.array([10, 20, 30]) / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(torch_like[0, 0, 0], want, rtol=1e-5)
    mat = P.preprocessing_for("matconvnet", np.array([1.0, 2.0, 3.0]))(px)
    np.testing.assert_array_equal(mat[0, 0, 0], [9, 18, 27])
    assert caffe.dtype == np.float32 and px[0, 0, 0, 0] == 10  # input untouched
    with pytest.raises(ValueError, match=r"expected images of shape \(N, H, W, 3\)"):
        P.preprocessing_for("caffe")(px[0])


@needs("scipy")
def test_matconvnet_class_names_and_average_image_come_from_the_file(tmp_path):
    net = ww.TorchLayout(**SMALL)
    path, avg = ww.write_matconvnet(net, tmp_path / "imagenet-vgg-verydeep-16.mat", average="image")
    model = P.load(path)
    assert model.class_names == [f"thing {i}" for i in range(10)]
    assert model.preprocessing.mean.shape == (64, 64, 3)
    np.testing.assert_array_equal(model.preprocessing.mean, avg)
    big = images(1, 96)  # another size: the average image counts as its mean pixel
    np.testing.assert_allclose(model.preprocess(big), big.astype(np.float32) - avg.mean(axis=(0, 1)), atol=1e-3)


def test_imagenet_class_names_from_the_synset_file(tmp_path, monkeypatch, shared_data):
    net = ww.TorchLayout(**dict(SMALL, num_classes=1000))
    model = P.load(ww.write_caffe(net, tmp_path / "net.caffemodel"))
    assert len(model.class_names) == 1000
    assert (model.class_names[0], model.class_names[281], model.class_names[967]) == ("tench", "tabby", "espresso")
    monkeypatch.setenv("VGGEDU_DATA", str(tmp_path / "nowhere"))
    with pytest.warns(UserWarning, match=r"synset_words\.txt is missing"):
        model = P.load(tmp_path / "net.caffemodel")
    assert model.class_names is None


@needs("safetensors")
def test_checkpoint_keeps_preprocessing_and_class_names(tmp_path):
    net = ww.TorchLayout(**SMALL)
    model = P.load(ww.write_safetensors(net, tmp_path / "a.safetensors"))
    model.class_names = [f"c{i}" for i in range(10)]
    path = save_checkpoint(tmp_path / "imported.npz", model)
    loaded = load_checkpoint(path).model
    assert loaded.preprocessing.channels == "RGB" and loaded.preprocessing.source == "safetensors"
    np.testing.assert_array_equal(loaded.preprocessing.std, model.preprocessing.std)
    assert loaded.class_names == model.class_names
    imgs = images()
    np.testing.assert_array_equal(loaded.forward(loaded.preprocess(imgs)), model.forward(model.preprocess(imgs)))
    # the preprocessing is covered by the checkpoint's hash like everything else
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    header = json.loads(arrays["header"].tobytes())
    header["preprocessing"]["channels"] = "BGR"
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match="SHA-256"):
        load_checkpoint(path)


def test_a_built_net_has_no_preprocessing():
    from vggedu import build_vgg

    model = build_vgg("tiny", num_classes=10, input_size=32)
    assert model.preprocessing is None and model.class_names is None
    with pytest.raises(ValueError, match="has no preprocessing"):
        model.preprocess(images(1, 32))


# --------------------------------------------------------------------------- refusals


def _truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.mark.parametrize("variant", sorted(WRITERS))
def test_truncated_files_are_refused_naming_the_file(variant, tmp_path):
    module, write, _ = WRITERS[variant]
    if module and not HAS[module]:
        pytest.skip(f"{module} is not installed")
    path = write(ww.TorchLayout(**SMALL), tmp_path / "cut")
    fmt = P.detect_format(path)
    _truncate(path)
    with pytest.raises(ValueError, match=path.name.replace(".", r"\.")):
        P.load(path, format=fmt)


def test_caffe_missing_layer_is_named(tmp_path):
    net = ww.TorchLayout(**SMALL)
    del net.convs[5]  # conv3_2 gone: the file's names say which
    net.blocks[2] -= 1
    path = ww.write_caffe(net, tmp_path / "holes.caffemodel")
    raw = wf.read_caffe(path)
    names = [r.name for r in raw.layers]
    assert "conv3_3" not in names  # the writer renumbers: conv3_3 is the one missing now
    with pytest.raises(ValueError, match=r"holes\.caffemodel.*missing layer 'conv3_3'"):
        P.load(path)


@needs("safetensors")
def test_torchvision_missing_tensor_and_other_nets_are_refused(tmp_path):
    from safetensors.numpy import save_file

    sd = ww.TorchLayout(**SMALL).state_dict()
    del sd["classifier.6.bias"]
    save_file(sd, str(tmp_path / "nobias.safetensors"))
    with pytest.raises(ValueError, match=r"nobias\.safetensors: layer classifier\.6 has no classifier\.6\.bias"):
        P.load(tmp_path / "nobias.safetensors")
    sd = ww.TorchLayout(**SMALL).state_dict()
    del sd["classifier.6.weight"], sd["classifier.6.bias"]
    save_file(sd, str(tmp_path / "nofc8.safetensors"))
    with pytest.raises(ValueError, match=r"nofc8\.safetensors.*missing layer 'classifier\.6' \(fc8"):
        P.load(tmp_path / "nofc8.safetensors")
    save_file({"conv1.weight": np.zeros((4, 3, 7, 7), np.float32), "fc.weight": np.zeros((10, 4), np.float32)},
              str(tmp_path / "resnet.safetensors"))
    with pytest.raises(ValueError, match=r"resnet\.safetensors: has no torchvision VGG keys"):
        P.load(tmp_path / "resnet.safetensors")
    sd = ww.TorchLayout(**SMALL).state_dict()
    sd["features.1.running_mean"] = np.zeros(4, np.float32)
    save_file(sd, str(tmp_path / "bn.safetensors"))
    with pytest.raises(ValueError, match="batch-normalised"):
        P.load(tmp_path / "bn.safetensors")
    sd = ww.TorchLayout(**SMALL).state_dict()
    sd["features.7.weight"] = np.zeros((8, 4, 3, 3), np.float32)  # conv2_2 takes 4 channels, conv2_1 gave 8
    save_file(sd, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ValueError, match=r"wrong\.safetensors.*'features\.7' \(conv2_2\)"):
        P.load(tmp_path / "wrong.safetensors")


@needs("h5py")
def test_keras_missing_weight_and_theano_kernels_are_refused(tmp_path):
    import h5py

    net = ww.TorchLayout(**SMALL)
    path = ww.write_keras(net, tmp_path / "k.h5")
    with h5py.File(path, "a") as f:
        del f["block4_conv2"]["block4_conv2_b_1:0"]
    with pytest.raises(ValueError, match=r"k\.h5: layer 'block4_conv2'"):
        P.load(path)
    convs, fcs = net.keras_arrays()
    convs[0] = (net.convs[0][0], convs[0][1])  # (F, C, KH, KW): a Theano-ordered kernel
    path = ww.write_keras(net, tmp_path / "th.h5", arrays=(convs, fcs))
    with pytest.raises(ValueError, match=r"th\.h5: layer 'block1_conv1' \(conv1_1\): weight of shape \(4, 3, 3, 3\)"):
        P.load(path)


@needs("scipy")
def test_matconvnet_refusals(tmp_path):
    from scipy.io import savemat

    savemat(str(tmp_path / "other.mat"), {"x": np.ones(3)})
    with pytest.raises(ValueError, match=r"other\.mat: has no 'layers' variable"):
        P.load(tmp_path / "other.mat")
    net = ww.TorchLayout(**SMALL)
    convs, fcs = net.matconvnet_arrays()
    fcs[0] = (fcs[0][0][:, :, :, :8], fcs[0][1][:8])  # fc6 with 8 outputs, fc7 still takes 16
    path, _ = ww.write_matconvnet(net, tmp_path / "bad.mat", arrays=(convs, fcs))
    with pytest.raises(ValueError, match=r"bad\.mat.*'fc7'"):
        P.load(path)


def test_wrong_prototxt_is_refused(tmp_path):
    net = ww.TorchLayout(**SMALL)
    path = ww.write_caffe(net, tmp_path / "VGG_ILSVRC_16_layers.caffemodel")
    names, _ = net.names("paper")
    proto = ['name: "VGG_ILSVRC_16_layers"', 'input: "data"'] + [f"input_dim: {d}" for d in (10, 3, 64, 64)]
    for n in names + ["fc6", "fc7", "fc8"]:
        kind = "CONVOLUTION" if n.startswith("conv") else "INNER_PRODUCT"
        proto.append(f'layers {{\n  bottom: "x"\n  top: "{n}"\n  name: "{n}"\n  type: {kind}  # a comment\n'
                     f'  convolution_param {{ num_output: 4 pad: 1 kernel_size: 3 }}\n}}')
    (tmp_path / "deploy.prototxt").write_text("\n".join(proto))
    model = P.load(path, prototxt=tmp_path / "deploy.prototxt")
    assert model.input_size == 64
    (tmp_path / "deploy19.prototxt").write_text("\n".join(proto).replace('name: "conv5_3"', 'name: "conv5_4"'))
    with pytest.raises(ValueError, match=r"VGG_ILSVRC_16_layers\.caffemodel: does not match .*deploy19"):
        P.load(path, prototxt=tmp_path / "deploy19.prototxt")
    (tmp_path / "deploy32.prototxt").write_text("\n".join(proto).replace("input_dim: 64", "input_dim: 32"))
    with pytest.raises(ValueError, match=r"says the input is 32x32, but fc6 takes a 2x2"):
        P.load(path, prototxt=tmp_path / "deploy32.prototxt")


# --------------------------------------------------------------------------- full size, one per format


@pytest.fixture(scope="session")
def full_size(tmp_path_factory):
    """``get(format) -> (path, image, expected logits)``: one random full-size VGG-16 (the same numbers for every
    format), written in each format once per session (about 528 MB; one file on disk at a time)."""
    folder = tmp_path_factory.mktemp("full_size_vgg16")
    net = ww.TorchLayout("D", seed=11)
    imgs = images(1, 224, seed=5)
    cache, logits = {}, {}

    def expected(kind):
        if kind not in logits:
            logits[kind] = oracle(kind, net, imgs)
        return logits[kind]

    def get(fmt):
        if fmt not in cache:
            for old in cache.values():
                old[0].unlink(missing_ok=True)
            cache.clear()
            if fmt == "torchvision":
                import torch

                path = ww.write_pth(net, folder / "vgg16-397923af.pth")
                with torch.no_grad():  # the real framework
                    want = ww.torch_net(net)(torch.from_numpy(ww.torch_input(imgs))).numpy()
            elif fmt == "safetensors":
                path, want = ww.write_safetensors(net, folder / "vgg16.safetensors"), expected("torch")
            elif fmt == "caffe":
                path, want = ww.write_caffe(net, folder / "VGG_ILSVRC_16_layers.caffemodel"), expected("caffe")
            elif fmt == "keras":
                path = ww.write_keras(net, folder / "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
                want = expected("keras")
            else:  # uncompressed to keep the suite fast; the small files test compressed ones
                path, _ = ww.write_matconvnet(net, folder / "imagenet-vgg-verydeep-16.mat", compress=False)
                want = expected("matconvnet")
            cache[fmt] = (path, imgs, want)
        return cache[fmt]

    yield get
    for path, _, _ in cache.values():
        path.unlink(missing_ok=True)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchvision", "safetensors", "caffe", "keras", "matconvnet"])
def test_full_size_vgg16_gives_the_source_logits(fmt, full_size):
    module = {"torchvision": "torch", "safetensors": "safetensors", "caffe": None, "keras": "h5py",
              "matconvnet": "scipy"}[fmt]
    if module and not HAS[module]:
        pytest.skip(f"{module} is not installed")
    path, imgs, expected = full_size(fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on a well-formed file
        model = P.load(path)
    assert (model.config, model.num_classes, model.input_size, model.fc_width, model.width) == ("D", 1000, 224, 4096, 1)
    assert model.num_params() == 138_357_544  # Table 2's 138M, exactly
    assert model.params["fc6.W"].shape == (25088, 4096) and model.params["conv1_1.W"].shape == (3, 3, 3, 64)
    check(model, imgs, expected)
