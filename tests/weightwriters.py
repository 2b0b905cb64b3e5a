"""Test helpers: random VGG weights written in each released layout, and each source's own forward pass.

Nothing here imports vggedu: the writers follow the published formats and the oracles compute the
logits as each framework defines them (NCHW with (F, C, KH, KW) filters for Caffe and PyTorch,
NHWC with (KH, KW, C, F) kernels for Keras, all-convolutional HWIO for MatConvNet), so a test that
compares ``vggedu.pretrained.load(file)`` with them checks the importers against an independent
reading of the conventions.
"""

from __future__ import annotations

import numpy as np

CONV_CHANNELS = {  # conv out-channels per block (Table 1)
    "A": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "D": [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3],
    "E": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN, TORCH_STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


class TorchLayout:
    """A random VGG in PyTorch's (and Caffe's) layout: conv (F, C, 3, 3), fc (out, in) over (c, h, w)."""

    def __init__(self, config="D", width=1.0, fc_width=4096, num_classes=1000, input_size=224, seed=0):
        rng = np.random.default_rng(seed)
        self.config, self.input_size = config, input_size
        self.blocks, self.convs, self.fcs = [], [], []
        C = 3
        for block in CONV_CHANNELS[config]:
            self.blocks.append(len(block))
            for F in block:
                F = max(1, int(round(F * width)))
                W = rng.standard_normal((F, C, 3, 3), dtype=np.float32)
                W *= np.float32(np.sqrt(2.0 / (9 * C)))
                self.convs.append((W, rng.standard_normal(F, dtype=np.float32) * np.float32(0.1)))
                C = F
        self.pool_side = input_size // 32
        D = C * self.pool_side**2
        for M in (fc_width, fc_width, num_classes):
            W = rng.standard_normal((M, D), dtype=np.float32)
            W *= np.float32(np.sqrt(2.0 / D))
            self.fcs.append((W, rng.standard_normal(M, dtype=np.float32) * np.float32(0.1)))
            D = M
        self.last_channels = C

    def names(self, style):
        """Layer names in a format: 'paper' (conv1_1 ... fc8), 'keras', 'torch' (features.N)."""
        convs, fcs, index = [], [], 0
        for b, n in enumerate(self.blocks, 1):
            for i in range(1, n + 1):
                convs.append({"paper": f"conv{b}_{i}", "keras": f"block{b}_conv{i}", "torch": f"features.{index}"}[style])
                index += 2
            index += 1
        fcs = {"paper": ["fc6", "fc7", "fc8"], "keras": ["fc1", "fc2", "predictions"],
               "torch": ["classifier.0", "classifier.3", "classifier.6"]}[style]
        return convs, fcs

    def state_dict(self):
        convs, fcs = self.names("torch")
        sd = {}
        for name, (W, b) in zip(convs + fcs, self.convs + self.fcs):
            sd[f"{name}.weight"], sd[f"{name}.bias"] = W, b
        return sd

    def keras_arrays(self):
        """The same random numbers laid out as Keras stores them (a test-side reshuffle: the Keras oracle
        below reads these arrays with Keras's own semantics, so the reshuffle need not be right). Cached."""
        if getattr(self, "_keras", None) is None:
            s, C = self.pool_side, self.last_channels
            convs = [(W.transpose(2, 3, 1, 0).copy(), b) for W, b in self.convs]
            fcs = []
            for (W, b), side, chans in zip(self.fcs, (s, 1, 1), (C, None, None)):
                M = W.shape[0]
                src = W.reshape(M, chans or W.shape[1], side, side)
                out = np.empty((side, side, src.shape[1], M), np.float32)
                for m in range(0, M, 32):  # blocks of rows: a full-size fc6 at once is slow
                    out[..., m:m + 32] = src[m:m + 32].transpose(2, 3, 1, 0)
                fcs.append((out.reshape(-1, M), b))
            self._keras = (convs, fcs)
        return self._keras

    def matconvnet_arrays(self):
        convs, fcs = self.keras_arrays()
        s, C = self.pool_side, self.last_channels
        fcs = [(fcs[0][0].reshape(s, s, C, -1), fcs[0][1])] + [(W.reshape(1, 1, *W.shape), b) for W, b in fcs[1:]]
        return convs, fcs


# ------------------------------------------------------------------------------------------- oracles


def _conv_nchw(x, W, b):
    N, C, H, Wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((W.shape[0], N, H, Wd), np.float32)
    for dy in range(3):
        for dx in range(3):
            out += np.tensordot(W[:, :, dy, dx], xp[:, :, dy:dy + H, dx:dx + Wd], axes=([1], [1]))
    return np.maximum(out.transpose(1, 0, 2, 3) + b[None, :, None, None], 0)


def _conv_nhwc(x, W, b, pad=1):
    KH, KW = W.shape[:2]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    H, Wd = xp.shape[1] - KH + 1, xp.shape[2] - KW + 1
    out = np.zeros((x.shape[0], H, Wd, W.shape[3]), np.float32)
    for dy in range(KH):
        for dx in range(KW):
            out += np.tensordot(xp[:, dy:dy + H, dx:dx + Wd, :], W[dy, dx], axes=([3], [0]))
    return out + b


def caffe_forward(net: TorchLayout, x_nchw):
    """Caffe/PyTorch semantics: NCHW, correlation with (F, C, KH, KW), flatten (c, h, w), x @ W.T + b."""
    x, i = x_nchw, 0
    for n in net.blocks:
        for _ in range(n):
            x = _conv_nchw(x, *net.convs[i])
            i += 1
        N, C, H, W = x.shape
        x = x.reshape(N, C, H // 2, 2, W // 2, 2).max(axis=(3, 5))
    x = x.reshape(x.shape[0], -1)
    for j, (W, b) in enumerate(net.fcs):
        x = x @ W.T + b
        if j < 2:
            x = np.maximum(x, 0)
    return x


def keras_forward(convs, fcs, blocks, x_nhwc):
    """Keras (TensorFlow) semantics: NHWC, (KH, KW, C, F) kernels, Flatten in (h, w, c), x @ kernel + b."""
    x, i = x_nhwc, 0
    for n in blocks:
        for _ in range(n):
            x = np.maximum(_conv_nhwc(x, *convs[i]), 0)
            i += 1
        N, H, W, C = x.shape
        x = x.reshape(N, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))
    x = x.reshape(x.shape[0], -1)
    for j, (W, b) in enumerate(fcs):
        x = x @ W + b
        if j < 2:
            x = np.maximum(x, 0)
    return x


def matconvnet_forward(convs, fcs, blocks, x_hwcn_like):
    """MatConvNet semantics: every layer a conv on H x W x C maps (fc6 a valid 7x7 conv, fc7/fc8 1x1);
    pools 2x2/2 with pad [0 1 0 1] (bottom and right, -inf)."""
    x, i = x_hwcn_like, 0
    for n in blocks:
        for _ in range(n):
            x = np.maximum(_conv_nhwc(x, *convs[i]), 0)
            i += 1
        x = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=-np.inf)
        N, H, W, C = x.shape
        OH, OW = (H - 2) // 2 + 1, (W - 2) // 2 + 1
        x = x[:, :2 * OH, :2 * OW].reshape(N, OH, 2, OW, 2, C).max(axis=(2, 4))
    for j, (W, b) in enumerate(fcs):
        x = _conv_nhwc(x, W, b, pad=0)
        if j < 2:
            x = np.maximum(x, 0)
    return x.reshape(x.shape[0], -1)


def torch_net(net: TorchLayout):
    """The real thing: torch.nn layers as torchvision builds them, with ``net``'s weights loaded."""
    import torch

    layers, C, i = [], 3, 0
    for n in net.blocks:
        for _ in range(n):
            F = net.convs[i][0].shape[0]
            layers += [torch.nn.Conv2d(C, F, 3, padding=1), torch.nn.ReLU(inplace=True)]
            C, i = F, i + 1
        layers.append(torch.nn.MaxPool2d(2, 2))
    D, fc = net.fcs[0][0].shape[1], net.fcs[0][0].shape[0]
    classifier = [torch.nn.Linear(D, fc), torch.nn.ReLU(True), torch.nn.Dropout(), torch.nn.Linear(fc, fc),
                  torch.nn.ReLU(True), torch.nn.Dropout(), torch.nn.Linear(fc, net.fcs[2][0].shape[0])]

    class VGGTorch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(*layers)
            self.classifier = torch.nn.Sequential(*classifier)

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    model = VGGTorch().eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    return model


# ------------------------------------------------------------------------------------ source inputs


def caffe_input(images):
    """Caffe: BGR, minus the mean pixel, NCHW."""
    return np.ascontiguousarray((images[..., ::-1].astype(np.float32) - CAFFE_MEAN_BGR).transpose(0, 3, 1, 2))


def keras_input(images):
    """keras.applications.vgg16.preprocess_input ('caffe' mode), NHWC."""
    return images[..., ::-1].astype(np.float32) - CAFFE_MEAN_BGR


def torch_input(images):
    """torchvision: ToTensor (/255) then Normalize(mean, std), NCHW."""
    x = images.astype(np.float32) / np.float32(255)
    return np.ascontiguousarray(((x - TORCH_MEAN) / TORCH_STD).transpose(0, 3, 1, 2))


def matconvnet_input(images, average):
    return images.astype(np.float32) - average


# ------------------------------------------------------------------------------------------ writers


def write_safetensors(net: TorchLayout, path):
    from safetensors.numpy import save_file

    save_file(net.state_dict(), str(path))
    return path


def write_pth(net: TorchLayout, path, legacy=False):
    import torch

    sd = {k: torch.from_numpy(v) for k, v in net.state_dict().items()}
    torch.save(sd, str(path), _use_new_zipfile_serialization=not legacy)
    return path


def write_keras(net: TorchLayout, path, style="release", arrays=None):
    """``style='release'``: the keras-team file (``block1_conv1_W_1:0``, bytes names, extra layers with no
    weights); ``'keras2'``: ``save_weights`` nesting ``block1_conv1/block1_conv1/kernel:0``."""
    import h5py

    convs, fcs = arrays or net.keras_arrays()
    conv_names, fc_names = net.names("keras")
    order = []
    with h5py.File(path, "w") as f:
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.1.5" if style == "keras2" else b"1.1.0"
        g = f.create_group("input_1")
        g.attrs["weight_names"] = np.array([], dtype="S1")
        order.append("input_1")
        k = 0
        for b, n in enumerate(net.blocks, 1):
            for _ in range(n):
                order.append(conv_names[k])
                _keras_layer(f, conv_names[k], *convs[k], style)
                k += 1
            pool = f"block{b}_pool"
            f.create_group(pool).attrs["weight_names"] = np.array([], dtype="S1")
            order.append(pool)
        f.create_group("flatten").attrs["weight_names"] = np.array([], dtype="S1")
        order.append("flatten")
        for name, (W, bias) in zip(fc_names, fcs):
            _keras_layer(f, name, W, bias, style)
            order.append(name)
        f.attrs["layer_names"] = np.array([n.encode() for n in order])
    return path


def _keras_layer(f, name, W, b, style):
    g = f.create_group(name)
    if style == "release":
        names = [f"{name}_W_1:0", f"{name}_b_1:0"]
    else:
        names = [f"{name}/kernel:0", f"{name}/bias:0"]
    for n, a in zip(names, (W, b)):
        g.create_dataset(n, data=a)
    g.attrs["weight_names"] = np.array([n.encode() for n in names])


def write_matconvnet(net: TorchLayout, path, average="pixel", compress=True, arrays=None, classes=None):
    """A simplenn ``.mat`` (v5): ``layers`` cell of structs and ``meta``. ``average``: 'pixel' (1x1x3) or
    'image' (a full HxWx3 average image, as the beta releases had). Returns (path, average array)."""
    from scipy.io import savemat

    convs, fcs = arrays or net.matconvnet_arrays()
    conv_names, _ = net.names("paper")
    layers, k = [], 0

    def cell(*items):
        c = np.empty((1, len(items)), dtype=object)
        for i, item in enumerate(items):
            c[0, i] = item
        return c

    for b, n in enumerate(net.blocks, 1):
        for _ in range(n):
            W, bias = convs[k]
            layers.append({"name": conv_names[k], "type": "conv", "weights": cell(W, bias.reshape(1, -1)),
                           "size": np.array(W.shape, float), "pad": np.ones((1, 4)), "stride": np.ones((1, 2)),
                           "precious": 0, "dilate": 1, "opts": cell()})
            layers.append({"name": f"relu{conv_names[k][4:]}", "type": "relu", "leak": 0})
            k += 1
        layers.append({"name": f"pool{b}", "type": "pool", "method": "max", "pool": np.array([[2.0, 2.0]]),
                       "stride": np.array([[2.0, 2.0]]), "pad": np.array([[0.0, 1.0, 0.0, 1.0]]), "opts": cell()})
    for j, (W, bias) in enumerate(fcs):
        layers.append({"name": f"fc{6 + j}", "type": "conv", "weights": cell(W, bias.reshape(1, -1)),
                       "size": np.array(W.shape, float), "pad": np.zeros((1, 4)), "stride": np.ones((1, 2))})
        if j < 2:
            layers.append({"name": f"relu{6 + j}", "type": "relu", "leak": 0})
    layers.append({"name": "prob", "type": "softmax"})
    rng = np.random.default_rng(7)
    if average == "pixel":
        avg = np.array([122.74, 114.94, 101.64], np.float32).reshape(1, 1, 3)
    else:
        avg = (110 + 20 * rng.random((net.input_size, net.input_size, 3))).astype(np.float32)
    M = fcs[2][0].shape[-1]
    names = classes or [f"n{i:08d}" for i in range(M)]
    meta = {"inputs": {"name": "data", "size": np.array([[net.input_size, net.input_size, 3, 10]], float)},
            "classes": {"name": cell(*names), "description": cell(*[f"thing {i}, other name" for i in range(M)])},
            "normalization": {"imageSize": np.array([[net.input_size, net.input_size, 3]], float),
                              "averageImage": avg, "keepAspect": 1, "border": np.array([[32.0, 32.0]]),
                              "cropSize": 0.875, "interpolation": "bilinear"}}
    savemat(str(path), {"layers": cell(*layers), "meta": meta}, do_compression=compress, format="5")
    return path, avg


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, wire, payload):
    key = _varint(number << 3 | wire)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def write_caffe(net: TorchLayout, path, v1=True):
    """A ``.caffemodel`` written byte by byte (protobuf wire format): V1 ``layers`` with legacy 4-D blobs
    (num, channels, height, width), as the VGG release files, or current ``layer`` with BlobShape.
    Messages are lists of byte chunks (the weights as memoryviews) so a full-size net is not copied."""
    conv_names, _ = net.names("paper")

    def size(chunks):
        return sum(len(c) if isinstance(c, bytes) else c.nbytes for c in chunks)

    def nested(number, chunks):
        return [_varint(number << 3 | 2) + _varint(size(chunks))] + chunks

    def blob(a):
        if v1:
            dims = (1,) * (4 - a.ndim) + a.shape
            head = b"".join(_field(n, 0, _varint(d)) for n, d in zip((1, 2, 3, 4), dims))
        else:
            head = _field(7, 2, _field(1, 2, b"".join(_varint(d) for d in a.shape)))
        data = np.ascontiguousarray(a, "<f4").reshape(-1)
        return [head] + nested(5, [memoryview(data).cast("B")])

    def layer(name, kind, blobs=()):
        if v1:
            types = {"Convolution": 4, "ReLU": 18, "Pooling": 17, "InnerProduct": 14, "Dropout": 6, "Softmax": 20}
            body = [_field(4, 2, name.encode()) + _field(5, 0, _varint(types[kind]))]
            for a in blobs:
                body += nested(6, blob(a))
            return nested(2, body)
        body = [_field(1, 2, name.encode()) + _field(2, 2, kind.encode())]
        for a in blobs:
            body += nested(7, blob(a))
        return nested(100, body)

    out = [_field(1, 2, b"VGG_ILSVRC_16_layers")]
    if v1:
        out += [_field(3, 2, b"data")] + [_field(4, 0, _varint(d)) for d in (10, 3, net.input_size, net.input_size)]
    k = 0
    for b, n in enumerate(net.blocks, 1):
        for _ in range(n):
            out += layer(conv_names[k], "Convolution", net.convs[k])
            out += layer(f"relu{conv_names[k][4:]}", "ReLU")
            k += 1
        out += layer(f"pool{b}", "Pooling")
    for j, (W, bias) in enumerate(net.fcs):
        out += layer(f"fc{6 + j}", "InnerProduct", (W, bias))
        if j < 2:
            out += layer(f"relu{6 + j}", "ReLU") + layer(f"drop{6 + j}", "Dropout")
    out += layer("prob", "Softmax")
    with open(path, "wb") as f:
        for chunk in out:
            f.write(chunk)
    return path


def caffe_message_class():
    """``caffe.NetParameter`` (the subset VGG files use) built with protobuf's own descriptor machinery:
    Google's encoder writes the small test files, so the hand-written wire reader is checked against it."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="caffe_subset_for_tests.proto", package="caffe", syntax="proto2")

    def message(name, fields):
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name, packed in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
            if packed:
                f.options.packed = True

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("BlobShape", [("dim", 1, F.TYPE_INT64, rep, None, True)])
    message("BlobProto", [("shape", 7, F.TYPE_MESSAGE, opt, ".caffe.BlobShape", False),
                          ("data", 5, F.TYPE_FLOAT, rep, None, True),
                          ("num", 1, F.TYPE_INT32, opt, None, False), ("channels", 2, F.TYPE_INT32, opt, None, False),
                          ("height", 3, F.TYPE_INT32, opt, None, False), ("width", 4, F.TYPE_INT32, opt, None, False)])
    message("LayerParameter", [("name", 1, F.TYPE_STRING, opt, None, False), ("type", 2, F.TYPE_STRING, opt, None, False),
                               ("bottom", 3, F.TYPE_STRING, rep, None, False), ("top", 4, F.TYPE_STRING, rep, None, False),
                               ("blobs", 7, F.TYPE_MESSAGE, rep, ".caffe.BlobProto", False)])
    message("V1LayerParameter", [("bottom", 2, F.TYPE_STRING, rep, None, False), ("top", 3, F.TYPE_STRING, rep, None, False),
                                 ("name", 4, F.TYPE_STRING, opt, None, False), ("type", 5, F.TYPE_INT32, opt, None, False),
                                 ("blobs", 6, F.TYPE_MESSAGE, rep, ".caffe.BlobProto", False)])
    message("NetParameter", [("name", 1, F.TYPE_STRING, opt, None, False),
                             ("layers", 2, F.TYPE_MESSAGE, rep, ".caffe.V1LayerParameter", False),
                             ("input", 3, F.TYPE_STRING, rep, None, False), ("input_dim", 4, F.TYPE_INT32, rep, None, False),
                             ("layer", 100, F.TYPE_MESSAGE, rep, ".caffe.LayerParameter", False)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


def write_caffe_protobuf(net: TorchLayout, path, v1=False):
    """The same file as ``write_caffe``, encoded by Google's protobuf library (small nets only: slow)."""
    NetParameter = caffe_message_class()
    msg = NetParameter(name="vgg-test")
    conv_names, _ = net.names("paper")

    def add(name, kind, blobs=()):
        v1_types = {"Convolution": 4, "Pooling": 17, "InnerProduct": 14}
        layer = msg.layers.add(name=name, type=v1_types[kind]) if v1 else msg.layer.add(name=name, type=kind)
        for a in blobs:
            blob = layer.blobs.add()
            if v1:
                blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - a.ndim) + a.shape
            else:
                blob.shape.dim.extend(a.shape)
            blob.data.extend(a.ravel().tolist())

    k = 0
    for b, n in enumerate(net.blocks, 1):
        for _ in range(n):
            add(conv_names[k], "Convolution", net.convs[k])
            k += 1
        add(f"pool{b}", "Pooling")
    for j, fc in enumerate(net.fcs):
        add(f"fc{6 + j}", "InnerProduct", fc)
    with open(path, "wb") as f:
        f.write(msg.SerializeToString())
    return path
