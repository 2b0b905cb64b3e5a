"""Readers for the released VGG weight files, each returning the arrays in the file's OWN layout (lesson 09).

``vggedu.pretrained.load`` calls one of these and converts the result into vggedu's layout; keeping
the two steps apart keeps each convention visible. Every reader returns a ``RawNet``: the weight
layers in file order, each with the file's name for it, ``kind`` ("conv" or "fc"), the weight and
bias arrays exactly as stored, and whatever the file says about the net (class names, mean, input
size). Nothing here permutes an axis.

========================  ==========================================  ======================================
reader                    file                                        weights as stored
========================  ==========================================  ======================================
``read_matconvnet``       ``imagenet-vgg-verydeep-16.mat`` (v5 .mat)  filters (KH, KW, C, F); fc6 a 7x7 conv
``read_caffe``            ``VGG_ILSVRC_16_layers.caffemodel``         filters (F, C, KH, KW); fc (out, in)
``read_keras``            ``vgg16_weights_tf_dim_ordering_tf_kernels  kernels (KH, KW, C, F); fc (in, out)
                          .h5``
``read_torch``            ``vgg16-397923af.pth``                      weight (F, C, KH, KW); fc (out, in)
``read_safetensors``      ``*.safetensors`` with torchvision's keys   as torchvision
========================  ==========================================  ======================================

The Caffe reader parses protobuf's wire format itself (about 60 lines: a ``.caffemodel`` is one
``NetParameter`` message), so it needs no compiled ``caffe.proto``; an optional deploy ``.prototxt``
(protobuf's text format) is read by a small tokenizer. The others import their reader lazily:
scipy (``.mat``), h5py (``.h5``), torch (``.pth``), safetensors, all in the ``pretrained`` extra
except torch. Anything unreadable raises ``ValueError`` naming the file (and the layer when known).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class RawLayer:
    """One weight layer as the file stores it."""

    name: str  # the file's name: "conv1_1", "block1_conv1", "features.0", ...
    kind: str  # "conv" or "fc" (MatConvNet's fc6-fc8: "fc", but stored as 7x7 / 1x1 conv filters)
    W: np.ndarray
    b: np.ndarray
    info: dict = field(default_factory=dict)  # stride, pad, ... where the file says


@dataclass
class RawNet:
    path: Path
    format: str
    layers: list  # RawLayer, in the file's order
    pools: list = field(default_factory=list)  # (name, info) of the pooling layers, where the file lists them
    class_names: list | None = None
    mean: np.ndarray | None = None  # (3,) or (H, W, 3), where the file stores one
    input_size: int | None = None


def need(module: str, path, what: str):
    """Import an optional reader, or say which extra provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        extra = "pip install torch" if module == "torch" else "pip install 'vggedu[pretrained]'"
        raise ImportError(f"reading {path} ({what}) needs the {module.split('.')[0]} package: {extra}") from None


def _bad(path, message: str) -> ValueError:
    return ValueError(f"{path}: {message}")


# ---------------------------------------------------------------------------------------------- MatConvNet


def _one(x):
    """Unwrap MATLAB's 1x1 cells/structs (scipy returns them as (1, 1) object arrays)."""
    while isinstance(x, np.ndarray) and x.dtype == object and x.size == 1:
        x = x.flat[0]
    return x


def _text(x) -> str:
    x = _one(x)
    if isinstance(x, np.ndarray):
        return "".join(str(c) for c in x.ravel()) if x.dtype.kind == "U" else str(x.ravel()[0]) if x.size else ""
    return str(x)


def _strings(x) -> list:
    return [_text(c) for c in np.asarray(x, dtype=object).ravel()]


def _get(struct, name, default=None):
    return getattr(struct, name, default) if hasattr(struct, "_fieldnames") else default


def read_matconvnet(path) -> RawNet:
    """A MatConvNet ``simplenn`` file: ``layers`` (cell of structs) and ``meta`` (classes, normalization)."""
    sio = need("scipy.io", path, "a MatConvNet .mat file")
    try:
        mat = sio.loadmat(str(path), struct_as_record=False, squeeze_me=False)
    except NotImplementedError:
        raise _bad(path, "is a MATLAB v7.3 (HDF5) file; MatConvNet's releases are v5 files (save -v7)") from None
    except Exception as err:  # scipy raises ValueError, OSError, zlib.error, ... on damaged files
        raise _bad(path, f"cannot be read as a MATLAB v5 file (truncated or corrupt?): {err}") from None
    if "layers" not in mat:
        raise _bad(path, f"has no 'layers' variable (found {sorted(k for k in mat if not k.startswith('__'))}): "
                   "not a MatConvNet simplenn net (a DagNN file has 'vars' and 'params')")
    raw = RawNet(Path(path), "matconvnet", [])
    pools_before = []  # per conv layer: how many pools came before it (the convs after the last are fc6-fc8)
    for cell in np.asarray(mat["layers"], dtype=object).ravel():
        layer = _one(cell)
        name, kind = _text(_get(layer, "name", "")), _text(_get(layer, "type", ""))
        if kind == "conv":
            weights = _get(layer, "weights")
            if weights is not None and np.asarray(weights, dtype=object).size >= 2:
                filters, biases = (np.asarray(w) for w in np.asarray(weights, dtype=object).ravel()[:2])
            elif _get(layer, "filters") is not None:  # the beta releases: fields filters and biases
                filters, biases = np.asarray(_get(layer, "filters")), np.asarray(_get(layer, "biases"))
            else:
                raise _bad(path, f"layer {name!r} has no filters and biases")
            if filters.ndim > 4 or filters.size == 0:
                raise _bad(path, f"layer {name!r}: filters of shape {filters.shape}")
            filters = filters.reshape(filters.shape + (1,) * (4 - filters.ndim))  # MATLAB drops trailing 1s
            info = {"stride": np.asarray(_get(layer, "stride", 1)).ravel().tolist(),
                    "pad": np.asarray(_get(layer, "pad", 0)).ravel().tolist()}
            raw.layers.append(RawLayer(name, "conv", filters, biases.ravel(), info))
            pools_before.append(len(raw.pools))
        elif kind == "pool":
            raw.pools.append((name, {"method": _text(_get(layer, "method", "max")),
                                     "pool": np.asarray(_get(layer, "pool", 2)).ravel().tolist(),
                                     "stride": np.asarray(_get(layer, "stride", 1)).ravel().tolist(),
                                     "pad": np.asarray(_get(layer, "pad", 0)).ravel().tolist()}))
    for layer, before in zip(raw.layers, pools_before):
        if raw.pools and before == len(raw.pools):
            layer.kind = "fc"  # stored as a conv: fc6 7x7xCxF (rows (h, w, c) once flattened), fc7/fc8 1x1
    meta = _one(mat["meta"]) if "meta" in mat else None
    classes = _one(_get(meta, "classes")) if meta is not None else _one(mat.get("classes"))
    norm = _one(_get(meta, "normalization")) if meta is not None else _one(mat.get("normalization"))
    if classes is not None and _get(classes, "description") is not None:
        raw.class_names = [d.split(",")[0].strip() for d in _strings(_get(classes, "description"))]
    elif classes is not None and _get(classes, "name") is not None:
        raw.class_names = _strings(_get(classes, "name"))
    if norm is not None:
        avg = _get(norm, "averageImage")
        if avg is not None and np.asarray(avg).size:
            avg = np.asarray(avg, np.float32)
            raw.mean = avg.reshape(-1) if avg.size == 3 else avg.reshape(avg.shape[0], avg.shape[1], -1)
        size = _get(norm, "imageSize")
        if size is not None and np.asarray(size).size >= 2:
            raw.input_size = int(np.asarray(size).ravel()[0])
    return raw


# ---------------------------------------------------------------------------------------------- Caffe

# caffe.proto field numbers (https://github.com/BVLC/caffe/blob/master/src/caffe/proto/caffe.proto)
NET_NAME, NET_LAYERS_V1, NET_INPUT_DIM, NET_LAYER = 1, 2, 4, 100
V1_NAME, V1_TYPE, V1_BLOBS = 4, 5, 6
LAYER_NAME, LAYER_TYPE, LAYER_BLOBS = 1, 2, 7
BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH, BLOB_DATA, BLOB_SHAPE, BLOB_DOUBLE_DATA = 1, 2, 3, 4, 5, 7, 8
V1_TYPES = {4: "Convolution", 14: "InnerProduct", 17: "Pooling", 18: "ReLU", 6: "Dropout", 20: "Softmax",
            5: "Data", 21: "SoftmaxWithLoss", 1: "Accuracy"}  # V1LayerParameter.LayerType, the ones VGG uses


class WireError(ValueError):
    pass


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end:
            raise WireError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise WireError(f"varint longer than 10 bytes at byte {pos}")


def wire_fields(buf, start: int = 0, end: int | None = None):
    """Yield ``(field_number, wire_type, value)`` of one protobuf message in ``buf[start:end]``.

    Wire types: 0 varint (value an int), 1 fixed 64-bit and 5 fixed 32-bit (value the byte offset),
    2 length-delimited (value ``(offset, length)``: a string, a packed array or a nested message)."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire in (1, 5):
            value, pos = pos, pos + (8 if wire == 1 else 4)
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            value, pos = (pos, length), pos + length
        else:
            raise WireError(f"wire type {wire} (field {number}) at byte {pos}: not a protobuf message here")
        if pos > end or number == 0:
            raise WireError(f"field {number} runs past the end of its message (byte {pos} > {end})")
        yield number, wire, value


def _blob(buf, start, end) -> np.ndarray:
    dims, legacy, data = None, {}, []
    for number, wire, value in wire_fields(buf, start, end):
        if number == BLOB_SHAPE and wire == 2:
            dims = []
            for n, w, v in wire_fields(buf, value[0], value[0] + value[1]):
                if n == 1 and w == 2:  # packed int64 dims
                    p, stop = v[0], v[0] + v[1]
                    while p < stop:
                        d, p = _varint(buf, p, stop)
                        dims.append(d)
                elif n == 1:
                    dims.append(v)
        elif number in (BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH) and wire == 0:
            legacy[number] = value
        elif number == BLOB_DATA and wire == 2:  # packed float32
            data.append(np.frombuffer(buf, "<f4", value[1] // 4, value[0]))
        elif number == BLOB_DATA and wire == 5:  # unpacked, one float per field
            data.append(np.frombuffer(buf, "<f4", 1, value))
        elif number == BLOB_DOUBLE_DATA and wire == 2:
            data.append(np.frombuffer(buf, "<f8", value[1] // 8, value[0]).astype(np.float32))
    if dims is None:  # the legacy 4-D (num, channels, height, width), as in the VGG release files
        dims = [legacy.get(k, 1) for k in (BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH)]
    flat = data[0] if len(data) == 1 else np.concatenate(data) if data else np.zeros(0, np.float32)
    if flat.size != int(np.prod(dims)):
        raise WireError(f"a blob of shape {tuple(dims)} holds {flat.size} numbers")
    return flat.reshape(dims)


def _caffe_layers(buf):
    """(name, type, [blobs]) of every layer in a NetParameter, V1 ``layers`` or current ``layer``."""
    out, input_dim = [], []
    for number, wire, value in wire_fields(buf):
        if number in (NET_LAYERS_V1, NET_LAYER) and wire == 2:
            v1 = number == NET_LAYERS_V1
            name, kind, blobs = "", "", []
            for n, w, v in wire_fields(buf, value[0], value[0] + value[1]):
                if n == (V1_NAME if v1 else LAYER_NAME) and w == 2:
                    name = bytes(buf[v[0]:v[0] + v[1]]).decode("utf-8", "replace")
                elif n == (V1_TYPE if v1 else LAYER_TYPE):
                    kind = V1_TYPES.get(v, f"V1 type {v}") if v1 else bytes(buf[v[0]:v[0] + v[1]]).decode()
                elif n == (V1_BLOBS if v1 else LAYER_BLOBS) and w == 2:
                    blobs.append(_blob(buf, v[0], v[0] + v[1]))
            out.append((name, kind, blobs))
        elif number == NET_INPUT_DIM and wire == 0:
            input_dim.append(value)
    return out, input_dim


def read_prototxt(path) -> list:
    """The layers of a deploy ``.prototxt`` as ``(name, type, params)``, plus ``("input_dim", dims)``.

    A tokenizer for protobuf's text format, enough for Caffe net definitions (``key: value`` and
    ``key { ... }``, V1 ``layers`` with enum types and current ``layer`` with string types)."""
    text = Path(path).read_text()
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[{}:]|[^\s{}:#"]+|#[^\n]*', text)
    tokens = [t for t in tokens if not t.startswith("#")]
    pos = 0

    def message():
        nonlocal pos
        fields: dict = {}
        while pos < len(tokens) and tokens[pos] != "}":
            key = tokens[pos]
            pos += 1
            if pos < len(tokens) and tokens[pos] == ":":
                pos += 1
            if pos < len(tokens) and tokens[pos] == "{":
                pos += 1
                value = message()
                pos += 1  # the closing brace
            elif pos < len(tokens):
                value = tokens[pos].strip('"')
                pos += 1
            else:
                raise _bad(path, f"ends inside field {key!r}")
            fields.setdefault(key, []).append(value)
        return fields

    net = message()
    layers = [(m.get("name", [""])[0], m.get("type", [""])[0], m) for m in net.get("layer", []) + net.get("layers", [])]
    dims = [int(d) for d in net.get("input_dim", [])]
    for shape in net.get("input_shape", []):
        dims = [int(d) for d in shape.get("dim", [])]
    return layers, dims


def read_caffe(path, prototxt=None) -> RawNet:
    """A ``.caffemodel``: a serialised ``NetParameter`` whose layers carry their blobs (V1 or current)."""
    data = Path(path).read_bytes()
    try:
        layers, input_dim = _caffe_layers(memoryview(data))
    except WireError as err:
        raise _bad(path, f"is not a complete Caffe NetParameter (truncated or corrupt?): {err}") from None
    raw = RawNet(Path(path), "caffe", [])
    for name, kind, blobs in layers:
        if kind in ("Convolution", "CONVOLUTION", "InnerProduct", "INNER_PRODUCT") or (not kind and blobs):
            if len(blobs) != 2:
                raise _bad(path, f"layer {name!r} ({kind}) has {len(blobs)} blobs, expected weights and biases")
            W, b = blobs
            is_fc = kind in ("InnerProduct", "INNER_PRODUCT") or (not kind and (W.ndim == 2 or W.shape[:2] == (1, 1)))
            if is_fc:  # legacy blobs are 4-D (1, 1, out, in)
                W = W.reshape(W.shape[-2], W.shape[-1])
            raw.layers.append(RawLayer(name, "fc" if is_fc else "conv", W, b.reshape(-1)))
        elif kind in ("Pooling", "POOLING"):
            raw.pools.append((name, {}))
    if len(input_dim) == 4:
        raw.input_size = int(input_dim[2])
    if prototxt is not None:
        _check_against_prototxt(raw, prototxt)
    return raw


def _check_against_prototxt(raw: RawNet, prototxt) -> None:
    layers, dims = read_prototxt(prototxt)
    wanted = [name for name, kind, _ in layers if kind.lower() in ("convolution", "innerproduct", "inner_product")]
    have = [layer.name for layer in raw.layers]
    if wanted != have:
        missing = [n for n in wanted if n not in have]
        raise _bad(raw.path, f"does not match {prototxt}: "
                   + (f"missing layer {missing[0]!r}" if missing else f"layers {have} vs {wanted}"))
    if len(dims) == 4:
        raw.input_size = dims[2]


# ---------------------------------------------------------------------------------------------- Keras


def _decode(x) -> str:
    return x.decode("utf-8") if isinstance(x, (bytes, np.bytes_)) else str(x)


def read_keras(path) -> RawNet:
    """A Keras HDF5 weight file: root attribute ``layer_names``, each layer's ``weight_names``.

    Both layouts of real files: the release file's ``block1_conv1/block1_conv1_W_1:0`` and Keras 2's
    ``save_weights`` nesting ``block1_conv1/block1_conv1/kernel:0`` (the names are paths under the
    layer's group). A full ``model.save`` file keeps the same tree under ``model_weights``."""
    h5py = need("h5py", path, "a Keras .h5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise _bad(path, f"cannot be opened as HDF5 (truncated or corrupt?): {err}") from None
    raw = RawNet(Path(path), "keras", [])
    with f:
        root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        if "layer_names" not in root.attrs:
            hint = " (a Keras 3 .weights.h5 file: save it with Keras 2's layout)" if "layers" in root else ""
            raise _bad(path, f"has no 'layer_names' attribute: not a Keras HDF5 weight file{hint}")
        for lname in (_decode(n) for n in root.attrs["layer_names"]):
            try:
                group = root[lname]
                names = [_decode(n) for n in group.attrs.get("weight_names", [])]
                arrays = [np.asarray(group[n][()]) for n in names]
            except (KeyError, OSError, RuntimeError) as err:
                raise _bad(path, f"layer {lname!r}: a weight listed in the file cannot be read (missing or "
                           f"truncated?): {err}") from None
            if not arrays:
                continue
            if len(arrays) != 2:
                raise _bad(path, f"layer {lname!r} has {len(arrays)} weights {names}, expected kernel and bias")
            W, b = arrays
            raw.layers.append(RawLayer(lname, "conv" if W.ndim == 4 else "fc", W, b.reshape(-1)))
    return raw


# ---------------------------------------------------------------------------------------------- torchvision

TORCH_KEY = re.compile(r"(features|classifier)\.(\d+)\.(weight|bias)$")


def _torch_layers(path, state: dict, fmt: str) -> RawNet:
    """torchvision's ``vgg16`` keys: ``features.<i>`` convs, ``classifier.0/3/6`` the FC layers."""
    if any(k.endswith("running_mean") for k in state):
        raise _bad(path, "holds a batch-normalised VGG (vgg16_bn): not the paper's net")
    groups: dict = {}
    for key, value in state.items():
        m = TORCH_KEY.search(key)
        if m:
            groups.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = value
    if not groups:
        raise _bad(path, f"has no torchvision VGG keys (features.N.weight, classifier.N.weight); found "
                   f"{sorted(state)[:4]}...")
    raw = RawNet(Path(path), fmt, [])
    for (part, index), tensors in sorted(groups.items(), key=lambda kv: (kv[0][0] != "features", kv[0][1])):
        name = f"{part}.{index}"
        missing = sorted({"weight", "bias"} - set(tensors))
        if missing:
            raise _bad(path, f"layer {name} has no {name}.{missing[0]}")
        W, b = (np.asarray(tensors[k]) for k in ("weight", "bias"))
        raw.layers.append(RawLayer(name, "conv" if part == "features" else "fc", W, b.reshape(-1)))
    return raw


def read_torch(path) -> RawNet:
    """A torchvision ``.pth`` state dict (torch's zip or legacy format), read with ``torch.load``."""
    torch = need("torch", path, "a PyTorch .pth file")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ... on damaged files
        raise _bad(path, f"cannot be read by torch.load (truncated or corrupt?): {err}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise _bad(path, f"holds a {type(state).__name__}, not a state dict")
    return _torch_layers(path, {k: v.detach().float().numpy() for k, v in state.items()
                                if hasattr(v, "detach")}, "torchvision")


def read_safetensors(path) -> RawNet:
    """A ``.safetensors`` file with torchvision's keys (no torch needed)."""
    st = need("safetensors.numpy", path, "a .safetensors file")
    try:
        state = st.load_file(str(path))
    except Exception as err:  # SafetensorError, OSError, ...
        raise _bad(path, f"cannot be read as safetensors (truncated or corrupt?): {err}") from None
    return _torch_layers(path, state, "safetensors")
