"""``load(path)``: the released VGG-16/19 weights (MatConvNet, Caffe, Keras, torchvision) as a vggedu ``VGG``.

Taught in ``notebooks/09_pretrained_vgg16_and_features.ipynb``. The files are read by
``vggedu.weightfiles`` in their own layouts; this module converts them AT THE BOUNDARY into
vggedu's (NHWC activations, conv weights (KH, KW, C, F), FC weights (in, out), fc6's rows in (h, w, c)
order) and attaches the input convention each source was trained with:

============  ==================  ======================  =================  =====================================
format        conv weights        fc6 weights             input channels     preprocessing (pixels 0..255)
============  ==================  ======================  =================  =====================================
matconvnet    (KH, KW, C, F)      7x7 conv (h, w, c, F)   RGB                minus the file's averageImage
caffe         (F, C, KH, KW)      (F, C*H*W): (c, h, w)   BGR                minus [103.939, 116.779, 123.68] (BGR)
keras         (KH, KW, C, F)      (H*W*C, F): (h, w, c)   BGR ("caffe" mode) minus [103.939, 116.779, 123.68] (BGR)
torchvision   (F, C, KH, KW)      (F, C*H*W): (c, h, w)   RGB                /255, minus (0.485, 0.456, 0.406),
                                                                             divided by (0.229, 0.224, 0.225)
safetensors   as torchvision      as torchvision          RGB                as torchvision
============  ==================  ======================  =================  =====================================

Caffe, MatConvNet and Keras hold the authors' own weights (Keras's were converted from Caffe, so
they keep Caffe's BGR first layer); torchvision's are PyTorch's retraining. The net keeps the
source's channel order in conv1_1 and ``model.preprocess`` produces it, so
``model.forward(model.preprocess(images))`` is the source's logits. The config (D = VGG-16,
E = VGG-19; A, B, C also fit) and the sizes (width, FC width, input size, classes) are inferred from
the tensors and checked layer by layer; anything truncated, missing or of another architecture is
refused with a ``ValueError`` naming the file and the layer. Pooling: Caffe rounds pool outputs up and
MatConvNet pads them [0 1 0 1]; on the even map sizes of 224x224 (and any multiple of 32) both equal
vggedu's 2x2/2 max-pool. ImageNet's class names come from the file when it has them (MatConvNet),
else from ``synset_words.txt`` under ``$VGGEDU_DATA/imagenet/`` (see ``imagenet_class_names``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from vggedu import weightfiles as wf
from vggedu.backend import to_device, to_numpy
from vggedu.configs import CONFIGS, scaled_channels
from vggedu.models import VGG, Preprocessing, build_vgg

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # the ILSVRC-2012 mean pixel, B, G, R (0..255)
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision, RGB, on pixels / 255
FORMATS = ("matconvnet", "caffe", "keras", "torchvision", "safetensors")
_ALIASES = {"mat": "matconvnet", "caffemodel": "caffe", "h5": "keras", "hdf5": "keras", "torch": "torchvision",
            "pytorch": "torchvision", "pth": "torchvision", "pt": "torchvision"}
CANDIDATE_CONFIGS = ("D", "E", "A", "B", "C")  # VGG-16 and VGG-19 first; A-LRN's LRN is in no released file

# how each format stores a conv / an FC layer (see the table above)
CONV_LAYOUT = {"matconvnet": "HWIO", "caffe": "OIHW", "keras": "HWIO", "torchvision": "OIHW", "safetensors": "OIHW"}
FC_LAYOUT = {"matconvnet": "conv", "caffe": "out,in(chw)", "keras": "in(hwc),out", "torchvision": "out,in(chw)",
             "safetensors": "out,in(chw)"}


def preprocessing_for(fmt: str, mean=None) -> Preprocessing:
    """The input convention of ``fmt`` (MatConvNet: ``mean`` is the file's average image or pixel)."""
    if fmt in ("caffe", "keras"):
        return Preprocessing("BGR", 1.0, CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), fmt)
    if fmt in ("torchvision", "safetensors"):
        return Preprocessing("RGB", 1 / 255, TORCH_MEAN, TORCH_STD, fmt)
    if mean is None:
        warnings.warn("the MatConvNet file stores no meta.normalization.averageImage: using the ILSVRC mean pixel",
                      stacklevel=3)
        mean = CAFFE_MEAN_BGR[::-1]
    return Preprocessing("RGB", 1.0, mean, np.ones(3, np.float32), fmt)


# ---------------------------------------------------------------------------------------------- layouts


def conv_to_hwio(W: np.ndarray, layout: str) -> np.ndarray:
    """A conv weight as vggedu stores it, (KH, KW, C, F), from ``layout`` "HWIO" or "OIHW" (Caffe, PyTorch)."""
    if layout == "OIHW":
        W = W.transpose(2, 3, 1, 0)  # (F, C, KH, KW) -> (KH, KW, C, F)
    return np.ascontiguousarray(W, dtype=np.float32)


def fc_to_in_out(W: np.ndarray, layout: str, pool_shape=None) -> np.ndarray:
    """An FC weight as vggedu stores it, (D, M) with fc6's D rows in (h, w, c) order.

    ``"out,in(chw)"``: Caffe's and PyTorch's (M, D), whose columns follow the flattened NCHW map,
    (c, h, w); ``pool_shape`` = (H, W, C) of that map (1x1 after fc6). ``"in(hwc),out"``: Keras's,
    already (D, M) in (h, w, c) order. ``"conv"``: MatConvNet's (KH, KW, C, M) filters, flattened."""
    if layout == "conv":  # rows (h, w, c); scipy gives MATLAB's column-major arrays: copy in blocks of columns
        out = np.empty(W.shape, np.float32)
        for m in range(0, W.shape[-1], 32):
            out[..., m:m + 32] = W[..., m:m + 32]
        return out.reshape(-1, W.shape[-1])
    if layout == "in(hwc),out":
        return np.ascontiguousarray(W, dtype=np.float32)
    M = W.shape[0]
    H, Wd, C = pool_shape
    src, out = W.reshape(M, C, H, Wd), np.empty((H, Wd, C, M), np.float32)
    for m in range(0, M, 32):  # (M, C, H, W) -> (H, W, C, M) in blocks of rows: 3x faster than at once on fc6
        out[..., m:m + 32] = src[m:m + 32].transpose(2, 3, 1, 0)
    return out.reshape(H * Wd * C, M)


def _conv_kcf(W: np.ndarray, layout: str):
    """(KH, KW, C, F) of a stored conv weight, without moving it."""
    if W.ndim != 4:
        return None
    if layout == "OIHW":
        return W.shape[2], W.shape[3], W.shape[1], W.shape[0]
    return W.shape


# ---------------------------------------------------------------------------------------------- names


def file_names(fmt: str, config: str) -> list:
    """``[(paper name, the file's name), ...]`` of the weight layers of ``config`` in format ``fmt``."""
    out, block, index, feature = [], 1, 0, 0
    for entry in CONFIGS[config]:
        if entry.startswith("conv"):
            index += 1
            name = f"conv{block}_{index}"
            keras = f"block{block}_conv{index}"
            out.append((name, {"keras": keras}.get(fmt, f"features.{feature}" if fmt in ("torchvision", "safetensors")
                                                   else name)))
            feature += 2  # conv, relu
        elif entry == "maxpool":
            block, index, feature = block + 1, 0, feature + 1
    heads = {"keras": ("fc1", "fc2", "predictions"), "torchvision": ("classifier.0", "classifier.3", "classifier.6")}
    heads["safetensors"] = heads["torchvision"]
    for paper, stored in zip(("fc6", "fc7", "fc8"), heads.get(fmt, ("fc6", "fc7", "fc8"))):
        out.append((paper, stored))
    return out


def _match_config(raw: wf.RawNet) -> tuple[str, list]:
    """The config whose layer names (or, for files with other names, conv count and kernels) fit the file."""
    names = [layer.name for layer in raw.layers]
    for config in CANDIDATE_CONFIGS:
        expected = file_names(raw.format, config)
        if [f for _, f in expected] == names:
            return config, expected
    # a named file with a layer missing: say which one
    best = None
    for config in CANDIDATE_CONFIGS:
        expected = [f for _, f in file_names(raw.format, config)]
        if set(names) <= set(expected) and (best is None or len(expected) < len(best[1])):
            best = (config, expected)
    if best is not None and names and len(best[1]) - len(names) <= 3:
        missing = [f for f in best[1] if f not in names]
        paper = dict((f, p) for p, f in file_names(raw.format, best[0]))
        raise wf._bad(raw.path, f"is missing layer {missing[0]!r} ({paper[missing[0]]} of VGG-{best[0]})"
                      + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    # other names: go by the conv kernels (C's 1x1 convs) and the count
    convs = [layer for layer in raw.layers if layer.kind == "conv"]
    kernels = [(_conv_kcf(layer.W, CONV_LAYOUT[raw.format]) or (0,))[0] for layer in convs]
    for config in CANDIDATE_CONFIGS:
        want = [int(e[4:].split("-")[0]) for e in CONFIGS[config] if e.startswith("conv")]
        if kernels == want and len(raw.layers) == len(convs) + 3:
            return config, [(p, layer.name) for (p, _), layer in zip(file_names(raw.format, config), raw.layers)]
    raise wf._bad(raw.path, f"does not hold a VGG: its {len(convs)} conv layers (kernels {kernels}) and "
                  f"{len(raw.layers) - len(convs)} FC layers match none of configs {', '.join(CANDIDATE_CONFIGS)} "
                  f"(VGG-16 = D: 13 convs, VGG-19 = E: 16, then 3 FC layers); layers: {names[:6]}...")


# ---------------------------------------------------------------------------------------------- loading


def detect_format(path) -> str:
    """The format of ``path`` from its first bytes (and its suffix where bytes cannot tell)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(128)
    suffix = path.suffix.lower()
    if head.startswith(b"MATLAB"):
        return "matconvnet"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "keras"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80\x02\x8a\x0a"):  # torch's zip / legacy magic
        return "torchvision"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    if suffix == ".caffemodel" or (head[:1] in (b"\x0a", b"\x12", b"\xa2") and suffix not in (".mat", ".h5")):
        return "caffe"
    raise ValueError(f"{path}: cannot tell its format from its first bytes or its suffix {suffix!r}; pass "
                     f"format= one of {FORMATS}")


def read(path, format: str | None = None, prototxt=None) -> wf.RawNet:
    """The file's layers in the file's own layout (``vggedu.weightfiles``), the format detected when None."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} does not exist")
    fmt = detect_format(path) if format is None else _ALIASES.get(format.lower(), format.lower())
    readers = {"matconvnet": wf.read_matconvnet, "keras": wf.read_keras, "torchvision": wf.read_torch,
               "safetensors": wf.read_safetensors}
    if fmt == "caffe":
        return wf.read_caffe(path, prototxt)
    if fmt not in readers:
        raise ValueError(f"unknown weight format {format!r}: expected one of {FORMATS}")
    return readers[fmt](path)


def load(path, format: str | None = None, prototxt=None) -> VGG:
    """Read a released VGG weight file into a ``vggedu.models.VGG`` (eval mode, float32, on the CPU).

    ``format``: one of ``FORMATS`` (None: detected from the file). ``prototxt``: a Caffe deploy file to
    check the ``.caffemodel`` against (optional: the VGG caffemodels carry their layers' names and
    shapes). The model comes with ``preprocess`` (the source's input convention) and ``class_names``.
    """
    raw = read(path, format, prototxt)
    model = to_vgg(raw)
    return model.eval()


def to_vgg(raw: wf.RawNet) -> VGG:
    """Convert a ``RawNet`` into vggedu's layout, checking every layer against the inferred config."""
    path, fmt = raw.path, raw.format
    config, names = _match_config(raw)
    layers = dict(zip([p for p, _ in names], raw.layers))
    convs = [p for p, _ in names if p.startswith("conv")]
    for paper, stored in names:  # the kinds must be right before any shape is read
        if layers[paper].kind != ("conv" if paper.startswith("conv") else "fc"):
            raise wf._bad(path, f"layer {stored!r} ({paper}) is a {layers[paper].kind} layer in the file")
    shapes = {p: _conv_kcf(layers[p].W, CONV_LAYOUT[fmt]) for p in convs}
    for p in convs:
        if shapes[p] is None:
            raise wf._bad(path, f"layer {dict(names)[p]!r} ({p}): weight of shape {layers[p].W.shape} is not a conv")
    first = shapes[convs[0]]
    in_channels, width = first[2], first[3] / 64
    last_C = shapes[convs[-1]][3]
    fc6 = layers["fc6"].W
    if FC_LAYOUT[fmt] == "conv":
        side, D, fc_width = fc6.shape[0], int(np.prod(fc6.shape[:3])), fc6.shape[3]
    else:
        D, fc_width = (fc6.shape[0], fc6.shape[1]) if FC_LAYOUT[fmt] == "in(hwc),out" else (fc6.shape[1], fc6.shape[0])
        side = math.isqrt(D // max(last_C, 1)) if fc6.ndim == 2 else 0
    if fc6.ndim not in (2, 4) or side < 1 or side * side * last_C != D:
        raise wf._bad(path, f"layer {dict(names)['fc6']!r} (fc6): weight of shape {fc6.shape} does not take the "
                      f"flattened {last_C}-channel pool5 map of a VGG")
    if raw.input_size is not None and raw.input_size != 32 * side:
        raise wf._bad(path, f"says the input is {raw.input_size}x{raw.input_size}, but fc6 takes a {side}x{side} "
                      f"pool5 map ({32 * side}x{32 * side} input)")
    fc8 = layers["fc8"].W
    num_classes = int(fc8.shape[-1] if FC_LAYOUT[fmt] in ("conv", "in(hwc),out") else fc8.shape[0])
    C = in_channels
    for p, entry in zip(convs, [e for e in CONFIGS[config] if e.startswith("conv")]):
        K, F = int(entry[4:].split("-")[0]), scaled_channels(int(entry.split("-")[1]), width)
        if shapes[p] != (K, K, C, F):
            want = (F, C, K, K) if CONV_LAYOUT[fmt] == "OIHW" else (K, K, C, F)
            raise wf._bad(path, f"layer {dict(names)[p]!r} ({p}): weight of shape {layers[p].W.shape}, VGG-{config} "
                          f"at width {width:g} needs {want} ({CONV_LAYOUT[fmt]}; a Theano-ordered or other net?)")
        C = F
    try:
        model = build_vgg(config, num_classes=num_classes, input_size=32 * side, width=width, init="zeros",
                          fc_width=int(fc_width), in_channels=int(in_channels))
    except ValueError as err:
        raise wf._bad(path, f"its tensors describe no buildable VGG-{config}: {err}") from None
    pool_shape = (side, side, last_C)
    for paper, stored in names:
        layer = layers[paper]
        if paper.startswith("conv"):
            W = conv_to_hwio(layer.W, CONV_LAYOUT[fmt])
        elif paper == "fc6":
            W = fc_to_in_out(layer.W, FC_LAYOUT[fmt], pool_shape)
        else:  # fc7, fc8 take a 1x1 "map" with D channels: no reordering
            W = fc_to_in_out(layer.W, FC_LAYOUT[fmt], (1, 1, layer.W.shape[-1]))
        b = np.ascontiguousarray(layer.b, dtype=np.float32).reshape(-1)
        target = model.net[paper].params
        for key, value in (("W", W), ("b", b)):
            if value.shape != target[key].shape:
                raise wf._bad(path, f"layer {stored!r} ({paper}): {'weight' if key == 'W' else 'bias'} of shape "
                              f"{value.shape} after conversion, VGG-{config} needs {target[key].shape} "
                              f"(stored as {(layer.W if key == 'W' else layer.b).shape})")
            target[key] = value  # our own fresh array: no copy
        layer.W = layer.b = None  # let the file's arrays go as we convert (full-size nets are 0.5 GB)
    _check_pools(raw)
    model.preprocessing = preprocessing_for(fmt, raw.mean)
    if model.preprocessing.mean.shape[-1] != in_channels:
        raise wf._bad(path, f"its mean has {model.preprocessing.mean.shape[-1]} channels, conv1_1 takes {in_channels}")
    model.class_names = raw.class_names
    if model.class_names is not None and len(model.class_names) != num_classes:
        raise wf._bad(path, f"names {len(model.class_names)} classes, fc8 has {num_classes} outputs")
    if model.class_names is None and num_classes == 1000:
        try:
            model.class_names = imagenet_class_names()
        except FileNotFoundError as err:
            warnings.warn(f"{err} (model.class_names is None; predictions show class indices)", stacklevel=3)
    return model


def _check_pools(raw: wf.RawNet) -> None:
    for name, info in raw.pools:
        method = info.get("method", "max")
        size, stride = info.get("pool", [2]), info.get("stride", [2])
        if method != "max" or set(size) != {2} or set(stride) != {2}:
            raise wf._bad(raw.path, f"pooling layer {name!r} is a {method} pool {size}/{stride}, not VGG's 2x2/2 max")


def imagenet_class_names(root=None) -> list:
    """The 1000 ILSVRC-2012 class names in the released nets' output order (sorted WordNet ids), first name only.

    Read from ``<root or $VGGEDU_DATA>/imagenet/synset_words.txt`` (Caffe's ``data/ilsvrc12/synset_words.txt``:
    vggedu does not ship ImageNet's metadata)."""
    from vggedu.data.datasets import read_synsets
    from vggedu.data.download import data_root

    path = data_root(root) / "imagenet" / "synset_words.txt"
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet class names: {path} is missing. Put Caffe's synset_words.txt "
                                "(1000 lines '<wnid> <names>') there, or set VGGEDU_DATA to a folder with imagenet/")
    wnids, names = read_synsets(path)
    if len(names) != 1000:
        raise ValueError(f"{path} lists {len(names)} classes, not ILSVRC-2012's 1000")
    return names


# ---------------------------------------------------------------------------------------------- classifying


def softmax(scores) -> np.ndarray:
    """Row-wise softmax in float64 (posteriors to average across crops, flips and scales)."""
    s = np.asarray(scores, np.float64)
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def default_scale(model) -> int:
    """The test scale Q matching the classic centre crop: 256 for a 224x224 net (Q/crop = 256/224)."""
    return int(round(model.input_size * 256 / 224))


def fit_channels(image: np.ndarray, model) -> np.ndarray:
    """An (H, W, 3) RGB or (H, W)/(H, W, 1) grey uint8 image with the channels ``model`` takes."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"expected one image (H, W, C), got shape {image.shape}")
    if image.shape[2] == model.in_channels:
        return image
    if model.in_channels == 1 and image.shape[2] == 3:  # ITU-R 601 luma, as PIL's convert("L")
        grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None]
    if model.in_channels == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    raise ValueError(f"an image with {image.shape[2]} channels cannot feed a net taking {model.in_channels}")


def classify(model, image, method: str = "center", scales=None) -> np.ndarray:
    """Class posteriors (num_classes,) of one uint8 image (H, W, C) of any size.

    ``"center"``: rescale isotropically so the smaller side is Q, take the central input_size crop;
    ``"dense"``: the whole rescaled image through the fully convolutional net and its flip, the score
    map averaged (Sect. 3.2; ``vggedu.evaluate.dense_scores``). Posteriors are averaged over the
    scales Q in ``scales`` (None: ``default_scale(model)``)."""
    from vggedu.data.transforms import CenterCrop, rescale

    if method not in ("center", "dense"):
        raise ValueError(f"unknown method {method!r}: use 'center' or 'dense'")
    image = fit_channels(image, model)
    scales = [default_scale(model)] if not scales else [int(q) for q in scales]
    for q in scales:
        if q < model.input_size:
            raise ValueError(f"scale Q={q} is smaller than the net's input size {model.input_size}")
    model.eval()
    probs = []
    if method == "center":
        for q in scales:
            x = model.preprocess(CenterCrop(model.input_size)(rescale(image, q))[None])
            probs.append(softmax(to_numpy(model.forward(to_device(x, model.device))))[0])
    else:
        from vggedu.evaluate import dense_scores, to_fully_convolutional  # lesson 07

        fcn = to_fully_convolutional(model)  # once for every scale
        x = model.preprocess(image[None])[0]  # dense_scores rescales the prepared image itself
        for q in scales:
            p, _ = dense_scores(fcn, x, q, flip=True)
            probs.append(np.asarray(to_numpy(p), np.float64).reshape(-1))
    return np.mean(probs, axis=0)


def top_k(probs, k: int = 5, class_names=None) -> list:
    """``[(class index, probability, name or None), ...]``, the k most probable first."""
    probs = np.asarray(probs).reshape(-1)
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), float(probs[i]), None if class_names is None else class_names[i]) for i in order]
