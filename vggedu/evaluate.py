"""The paper's test protocol (Sect. 3.2): FC layers as convolutions, dense evaluation; taught in lesson 07.

``notebooks/07_test_protocol.ipynb`` builds it step by step.

Dense evaluation. A net trained on ``input_size`` crops is applied to a whole image rescaled so
that its smaller side is Q (>= input_size). ``to_fully_convolutional(model)`` turns fc6 into a
KxK convolution (K = input_size / 32, the side of pool5's map: 7 for a 224 net) and fc7, fc8 into
1x1 convolutions. Their weights are *reshapes* of the FC weights, views of the same arrays:

    fc6.W (K*K*C, M), rows in (h, w, c) order  ->  conv (K, K, C, M)   (a view: no number copied)
    fc7.W (M, M)                               ->  conv (1, 1, M, M)
    fc8.W (M, classes)                         ->  conv (1, 1, M, classes)

On a Q x Q image pool5's map is Q/32 a side, so the class score map is (Q/32 - K + 1) a side:
2x2 at Q = 256 and 6x6 at Q = 384 for a 224 net. ``dense_scores`` takes the softmax at every
location, averages the map spatially, and averages that with the flipped image's (the paper:
"the soft-max class posteriors of the original and flipped images are averaged").
"""

from __future__ import annotations

import numbers

import numpy as np

from vggedu import nn
from vggedu.backend import device_of, get_array_module, to_device, to_numpy
from vggedu.data.transforms import rescale


class FullyConvolutional(nn.Sequential):
    """A VGG with its FC layers as convolutions (``to_fully_convolutional``), always in eval mode.

    ``forward(x)``: x (N, H, W, C) with H, W >= ``input_size`` -> class scores (N, h, w, classes),
    h = floor(H / 32) - K + 1 (K = input_size / 32, fc6's kernel; same for w). The layers keep the
    paper's names (``conv1_1`` ... ``pool5``, ``fc6``, ``relu6``, ``drop6``, ``fc7``, ``relu7``,
    ``drop7``, ``fc8``): iterate them to stop early, e.g. after ``relu7`` for very deep features.
    """

    def __init__(self, *modules, input_size: int, in_channels: int, num_classes: int, name: str):
        super().__init__(*modules, name=name)
        self.input_size, self.in_channels, self.num_classes = int(input_size), int(in_channels), int(num_classes)
        self.eval()

    @property
    def device(self) -> str:
        return device_of(self.layers[0].params["W"])

    @property
    def dtype(self):
        return self.layers[0].params["W"].dtype

    def train(self):
        raise RuntimeError("a fully convolutional VGG is for testing only: train the VGG it came from")

    def forward(self, x):
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 4 or shape[3] != self.in_channels:
            raise ValueError(f"{self.name} expects x of shape (N, H, W, {self.in_channels}) (NHWC), got {shape}")
        if min(shape[1:3]) < self.input_size:
            raise ValueError(f"{self.name}: the image is {shape[1]}x{shape[2]}, smaller than the net's input size "
                             f"{self.input_size}: fc6 needs a whole {self.input_size}x{self.input_size} window")
        return super().forward(x)


def _conv_sharing(W, b, stride, pad, name):
    """A ``Conv2d`` whose parameters are ``W`` and ``b`` themselves (not copies)."""
    conv = nn.Conv2d(1, 1, W.shape[0], stride=stride, pad=pad, name=name)  # 1 -> 1: allocates K*K numbers only
    conv.params = {"W": W, "b": b}
    return conv


def to_fully_convolutional(model) -> FullyConvolutional:
    """``model`` (a ``VGG``) as a ``FullyConvolutional`` net sharing its arrays (see the module docstring).

    Conv, pool, LRN, ReLU and dropout layers are rebuilt around the same parameter arrays; the
    flatten layer goes; each FC layer becomes a convolution whose weight is a reshape of its own:
    fc6 a KxK convolution over pool5's (K, K, C) map (K = input_size / 32; K*K*C is fc6.W's row
    count, its rows in (h, w, c) order), fc7 and fc8 1x1 convolutions. In-place updates of the
    model's arrays reach the converted net; convert again after replacing an array.
    """
    rows = model.summary()
    names = [r["name"] for r in rows]
    if "flatten" not in names:
        raise ValueError(f"{model!r} has no flatten layer: is it already fully convolutional?")
    # the map fc6 reads: the output of the layer before the flatten (pool5), (K, K, C)
    map_shape = tuple(rows[names.index("flatten") - 1]["output_shape"])
    layers = []
    for m in model.net.layers:
        if isinstance(m, nn.Flatten):
            continue
        if isinstance(m, nn.Conv2d):
            layers.append(_conv_sharing(m.params["W"], m.params["b"], m.stride, m.pad, m.name))
        elif isinstance(m, nn.Linear):
            W, b = m.params["W"], m.params["b"]
            D, M = W.shape
            h, w, c = map_shape
            if h * w * c != D:
                raise ValueError(f"{m.name}: W {tuple(W.shape)} does not read a {map_shape} map")
            layers.append(_conv_sharing(W.reshape(h, w, c, M), b, 1, 0, m.name))  # (h, w, c, M): a view
            map_shape = (1, 1, M)  # fc7 and fc8 read one position of M channels
        elif isinstance(m, nn.ReLU):
            layers.append(nn.ReLU(name=m.name, inplace=m.inplace))
        elif isinstance(m, nn.MaxPool2d):
            layers.append(nn.MaxPool2d(m.size, m.stride, name=m.name))
        elif isinstance(m, nn.LocalResponseNorm):
            layers.append(nn.LocalResponseNorm(m.size, m.alpha, m.beta, m.k, name=m.name))
        elif isinstance(m, nn.Dropout):
            layers.append(nn.Dropout(m.p, rng=m.rng, name=m.name))  # eval mode: the identity
        else:
            raise TypeError(f"to_fully_convolutional: no rule for layer {m!r}")
    return FullyConvolutional(*layers, input_size=model.input_size, in_channels=model.in_channels,
                              num_classes=model.num_classes, name=f"vgg-{model.config}-fully-convolutional")


def score_map_side(Q: int, input_size: int) -> int:
    """Side of the class score map of a square Q x Q image: floor(Q / 32) - input_size / 32 + 1 (the
    five pools floor their sizes). ``Q/32 - 6`` for a 224 net when 32 divides Q: 2 at 256, 6 at 384."""
    side, k = int(Q), int(input_size)
    for _ in range(5):
        side, k = side // 2, k // 2
    return side - k + 1


def softmax(scores, axis: int = -1):
    """Class posteriors from scores along ``axis`` (the row maximum subtracted first: never overflows)."""
    xp = get_array_module(scores)
    e = xp.exp(scores - scores.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def check_scale(Q, input_size: int) -> int:
    """``Q`` as an int, refused (ValueError naming it) unless it is a whole number >= ``input_size``."""
    if isinstance(Q, bool) or not isinstance(Q, numbers.Integral):
        raise ValueError(f"test scale Q must be a whole number of pixels, got {Q!r}")
    if Q < input_size:
        raise ValueError(f"test scale Q = {Q} is smaller than the net's input size {input_size}: "
                         f"the smaller side must be at least {input_size} (Sect. 3.2: Q >= 224 for a 224 net)")
    return int(Q)


def _prepared(image, in_channels: int) -> np.ndarray:
    """``image`` as a host (H, W, C) float array, after checking it."""
    shape = tuple(getattr(image, "shape", ()))
    if len(shape) != 3 or shape[2] != in_channels:
        raise ValueError(f"expected one image (H, W, {in_channels}), got shape {shape}")
    image = to_numpy(image)
    if image.dtype.kind != "f":
        raise TypeError(f"the image must be a float array prepared as the net expects (mean subtracted, scaled), "
                        f"got dtype {image.dtype}")
    return image


def rescaled(image, Q: int) -> np.ndarray:
    """``image`` (H, W, C), isotropically rescaled so that its smaller side is Q (bilinear, as in training)."""
    return rescale(image, Q)


def dense_scores(model, image, Q: int, flip: bool = True):
    """Dense evaluation of one image at scale Q: ``(probs (classes,), score_map (h, w, classes))``.

    ``model``: a ``VGG`` (converted here) or a ``FullyConvolutional`` (to convert once for many
    images). ``image``: one (H, W, C) float array prepared as ``model.forward`` expects (mean
    subtracted, scaled). It is rescaled so that its smaller side is Q (on the host, bilinear), run
    through the fully convolutional net whole, and the softmax is taken at every location:
    ``score_map`` holds those posteriors for the image as given. ``probs`` is the map averaged
    spatially; with ``flip`` averaged again with the horizontally flipped image's. Both come back
    on the model's device. (The paper sum-pools class *scores* and then takes a softmax; we average
    per-location posteriors, the same thing when the map is 1x1.)
    """
    fcn = model if isinstance(model, FullyConvolutional) else to_fully_convolutional(model)
    Q = check_scale(Q, fcn.input_size)
    img = rescaled(_prepared(image, fcn.in_channels), Q)
    batch = np.stack([img, img[:, ::-1]]) if flip else img[None]  # (1 or 2, H', W', C)
    maps = softmax(fcn.forward(to_device(batch.astype(fcn.dtype, copy=False), fcn.device)))  # (B, h, w, K)
    return maps.mean(axis=(1, 2)).mean(axis=0), maps[0]
