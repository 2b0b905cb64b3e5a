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

Multi-crop (``multicrop_scores``): a ``grid`` x ``grid`` (5 x 5) grid of input_size crops whose
outer positions touch the image's corners, each also flipped: 50 crops per scale. Crops see zero
padding at their borders where dense evaluation sees the real neighbouring pixels, so the two
complement each other (``"dense+multicrop"`` averages both). ``multiscale_scores`` averages a
method's posteriors over several Q (``default_scales``: {S - 32, S, S + 32} for a net trained at
fixed S, {Smin, (Smin + Smax) / 2, Smax} for a jittered one), ``fuse`` averages several nets'.

Evaluating checkpoints. ``TestNet`` holds a net with its input normalisation (from the checkpoint);
``dataset_posteriors(net, images, method, Q)`` gives the (N, classes) posteriors of a whole split,
``protocol_error`` the top-1/top-5 error of a method at a set of scales, of one net or several fused
(what ``vggedu evaluate --method ... --scales ...`` prints, in the shape of the paper's Tables 3-6).
``evaluate_model`` / ``evaluate_checkpoint`` are the single-centre-crop evaluation that training's
``--test`` and the demo use (loss, top-1 and top-5 error).
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from vggedu import nn
from vggedu.backend import device_of, get_array_module, to_device, to_numpy
from vggedu.data.transforms import rescale
from vggedu.metrics import DEFAULT_PIXEL_SCALE, topk_correct

METHODS = ("center", "dense", "multicrop", "dense+multicrop")


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


def _fcn(model) -> FullyConvolutional:
    return model if isinstance(model, FullyConvolutional) else to_fully_convolutional(model)


def _with_flips(batch: np.ndarray, flip: bool) -> np.ndarray:
    """(B, H, W, C) -> (2B, H, W, C): the images, then their mirror images (just the images without ``flip``)."""
    return np.concatenate([batch, batch[:, :, ::-1]]) if flip else batch


def _flips_averaged(probs, B: int, flip: bool):
    """(2B, ...) posteriors of images then flips -> (B, ...) averaged (unchanged without ``flip``)."""
    return (probs[:B] + probs[B:]) / 2 if flip else probs


FORWARD_PIXELS = 1 << 19  # images per forward pass: at most this many input pixels (10 crops of 224 x 224)


def _forward_probs(model, batch: np.ndarray):
    """Softmax posteriors of ``model`` on a host batch (moved to the model's device in its dtype), run in
    chunks of at most ``FORWARD_PIXELS`` input pixels so that a full-size net's 50 crops fit in memory."""
    fcn = isinstance(model, FullyConvolutional)
    dtype = model.dtype if fcn else model.net["conv1_1"].params["W"].dtype
    step = max(1, FORWARD_PIXELS // (batch.shape[1] * batch.shape[2]))
    out = []
    for lo in range(0, len(batch), step):
        x = to_device(np.ascontiguousarray(batch[lo:lo + step], dtype=dtype), model.device)
        out.append(softmax(model.forward(x) if fcn else model.forward(x, train=False)))
    return out[0] if len(out) == 1 else get_array_module(out[0]).concatenate(out)


def _dense_batch(fcn, batch: np.ndarray, flip: bool):
    """Rescaled images (B, H', W', C) -> (probs (B, classes), maps (B, h, w, classes) of the images as given)."""
    B = len(batch)
    maps = _forward_probs(fcn, _with_flips(batch, flip))  # (B or 2B, h, w, classes)
    return _flips_averaged(maps.mean(axis=(1, 2)), B, flip), maps[:B]


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
    fcn = _fcn(model)
    Q = check_scale(Q, fcn.input_size)
    img = rescaled(_prepared(image, fcn.in_channels), Q)
    probs, maps = _dense_batch(fcn, img[None], flip)
    return probs[0], maps[0]


def crop_grid(height: int, width: int, size: int, grid: int = 5) -> list[tuple[int, int]]:
    """Top-left corners (top, left) of a ``grid`` x ``grid`` grid of size x size crops, row by row: evenly
    spaced from the image's top-left corner (0, 0) to its bottom-right one (height - size, width - size)."""
    if grid < 1 or min(height, width) < size:
        raise ValueError(f"crop_grid: no {grid}x{grid} grid of {size}x{size} crops in a {height}x{width} image")
    tops = np.rint(np.linspace(0, height - size, grid)).astype(int)
    lefts = np.rint(np.linspace(0, width - size, grid)).astype(int)
    return [(int(t), int(left)) for t in tops for left in lefts]


def _multicrop_batch(model, batch: np.ndarray, grid: int, flip: bool):
    """Rescaled images (B, H', W', C) -> (B, classes): the posteriors of grid*grid crops (and flips) averaged."""
    B, H, W, _ = batch.shape
    s = model.input_size
    crops = np.stack([batch[:, t:t + s, left:left + s] for t, left in crop_grid(H, W, s, grid)], axis=1)
    crops = crops.reshape(B * grid * grid, s, s, -1)  # image-major: image b's crops are rows b*G .. b*G+G-1
    probs = _flips_averaged(_forward_probs(model, _with_flips(crops, flip)), len(crops), flip)
    return probs.reshape(B, grid * grid, -1).mean(axis=1)


def multicrop_scores(model, image, Q: int, grid: int = 5, flip: bool = True):
    """Multi-crop evaluation of one image at scale Q (Sect. 3.2): posteriors (classes,) on the model's device.

    ``image`` (H, W, C) float, prepared as ``model.forward`` expects, is rescaled so that its smaller
    side is Q; the ``grid`` x ``grid`` crops of ``crop_grid`` (input_size a side, covering the corners)
    and, with ``flip``, their mirror images (2 * 25 = 50 crops at grid 5) go through ``model`` (a
    ``VGG``) in one batch; their softmax posteriors are averaged.
    """
    Q = check_scale(Q, model.input_size)
    img = rescaled(_prepared(image, model.in_channels), Q)
    return _multicrop_batch(model, img[None], int(grid), flip)[0]


def _center_batch(model, batch: np.ndarray, flip: bool):
    """Rescaled images (B, H', W', C) -> (B, classes): the centre input_size crop (and its flip)."""
    B, H, W, _ = batch.shape
    s = model.input_size
    t, left = (H - s) // 2, (W - s) // 2
    return _flips_averaged(_forward_probs(model, _with_flips(batch[:, t:t + s, left:left + s], flip)), B, flip)


def center_scores(model, image, Q: int, flip: bool = True):
    """One centre crop of the image rescaled to smaller side Q (and its mirror image): posteriors (classes,)."""
    Q = check_scale(Q, model.input_size)
    img = rescaled(_prepared(image, model.in_channels), Q)
    return _center_batch(model, img[None], flip)[0]


def scores(model, image, Q: int, method: str = "dense", flip: bool = True):
    """Posteriors (classes,) of one prepared image at scale Q by ``method`` (one of ``METHODS``)."""
    method = check_method(method)
    if method == "dense":
        return dense_scores(model, image, Q, flip)[0]
    if method == "multicrop":
        return multicrop_scores(model, image, Q, flip=flip)
    if method == "center":
        return center_scores(model, image, Q, flip)
    return fuse([dense_scores(model, image, Q, flip)[0], multicrop_scores(model, image, Q, flip=flip)])


def multiscale_scores(model, image, scales, method: str = "dense", flip: bool = True):
    """Posteriors (classes,) of one prepared image averaged over the test scales ``scales`` (Sect. 3.2's
    multi-scale evaluation, Table 4): e.g. ``default_scales(S=256)`` = (224, 256, 288)."""
    scales = check_scales(scales, model.input_size)
    return fuse([scores(model, image, Q, method, flip) for Q in scales])


def fuse(posteriors, *more):
    """Average posterior arrays of one shape ((classes,) or (N, classes)): several nets' (the paper's fusion,
    Table 6), several scales' or methods'. ``fuse([p, q])`` or ``fuse(p, q)``; fusing one array gives it back."""
    single = hasattr(posteriors, "shape")
    posteriors = [posteriors, *more] if single or more else list(posteriors)
    if not posteriors:
        raise ValueError("fuse: no posteriors to average")
    shapes = {tuple(p.shape) for p in posteriors}
    if len(shapes) != 1:
        raise ValueError(f"fuse: posteriors of different shapes {sorted(shapes)} (same images and classes?)")
    total = posteriors[0]
    for p in posteriors[1:]:
        total = total + p
    return total / len(posteriors)


def default_scales(S=None, S_range=None, input_size: int = 224) -> tuple[int, ...]:
    """The paper's three test scales (Sect. 4.2): {S - 32, S, S + 32} for a net trained at fixed ``S``,
    {Smin, (Smin + Smax) / 2, Smax} for one trained with S jittered in ``S_range`` = (Smin, Smax).

    The step 32 is for 224 nets: it scales with ``input_size`` (round(32 * input_size / 224): 5 for a
    32 net), and no scale goes below ``input_size``. ``default_scales(256)`` = (224, 256, 288),
    ``default_scales(S_range=(256, 512))`` = (256, 384, 512)."""
    if (S is None) == (S_range is None):
        raise ValueError("default_scales: give either S (fixed-scale training) or S_range (jittered), not both")
    if S is not None:
        step = max(1, round(32 * input_size / 224))
        return tuple(sorted({max(int(input_size), int(S) + d) for d in (-step, 0, step)}))
    lo, hi = (int(v) for v in S_range)
    if lo > hi:
        raise ValueError(f"default_scales: S_range {S_range} has Smin > Smax")
    return tuple(sorted({lo, round((lo + hi) / 2), hi}))


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown test method {method!r}; use one of {', '.join(METHODS)}")
    return method


def check_scales(scales, input_size: int) -> tuple[int, ...]:
    """``scales`` (one Q or several) as a tuple of ints, each checked by ``check_scale``."""
    if isinstance(scales, numbers.Integral):
        scales = (scales,)
    scales = tuple(check_scale(Q, input_size) for Q in scales)
    if not scales:
        raise ValueError("no test scales given")
    return scales


# --- evaluating nets over a dataset -----------------------------------------------------------------


@dataclass
class TestNet:
    """A trained net with the input normalisation it was trained with: ``(pixel - mean) * scale``."""

    __test__ = False  # not a pytest test class

    model: object  # a vggedu.models.VGG
    mean: np.ndarray  # (C,) the training set's mean pixel
    scale: float  # pixel_scale
    name: str = "net"
    train_config: dict = field(default_factory=dict)  # the checkpoint's training settings (data, holdout, seed)

    def __post_init__(self):
        self.mean = np.asarray(self.mean, np.float32).reshape(-1)
        self.model.eval()
        self.fcn = to_fully_convolutional(self.model)

    def prepare(self, images) -> np.ndarray:
        """uint8 (or float pixel) images (..., H, W, C) -> float32 net input, normalised as in training."""
        return (np.asarray(images, np.float32) - self.mean) * np.float32(self.scale)


def load_test_net(path, device: str | None = None, data: str | None = None) -> TestNet:
    """A ``TestNet`` from a checkpoint (mean and scale from its meta; a never-trained file uses the mean
    of ``data``'s training split, or of the data it names, and the default pixel scale)."""
    from vggedu.backend import default_device
    from vggedu.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, device=device or default_device())
    info = ckpt.meta.get("input") or _fallback_input(ckpt, path, data)
    return TestNet(ckpt.model, info["mean"], info["scale"], name=str(path),
                   train_config=ckpt.meta.get("train_config") or {})


def _fallback_input(ckpt, path, data):
    from vggedu.rundata import load_split, train_mean

    run_cfg = ckpt.meta.get("train_config") or {}
    data = data or run_cfg.get("data")
    if data is None:
        raise ValueError(f"{path} does not say which data it was trained on: pass --data")
    train = load_split(data, "train", ckpt.model.input_size, run_cfg.get("holdout", 5000), None,
                       run_cfg.get("data_seed", 0))
    return {"mean": train_mean(train.images).tolist(), "scale": DEFAULT_PIXEL_SCALE}


def dataset_posteriors(net: TestNet, images, method: str, Q: int, flip: bool = True, batch_size: int = 64):
    """Posteriors (N, classes), NumPy float64, of ``net`` on ``images`` (N, H, W, C; uint8 pixels) by
    ``method`` at scale Q, computed ``batch_size`` images at a time (multi-crop: 50x as many crops)."""
    method = check_method(method)
    model = net.model
    Q = check_scale(Q, model.input_size)
    if method == "dense+multicrop":
        return fuse([dataset_posteriors(net, images, m, Q, flip, batch_size) for m in ("dense", "multicrop")])
    if method == "multicrop":
        batch_size = max(1, batch_size // 25)
    out = []
    for lo in range(0, len(images), batch_size):
        batch = np.stack([rescaled(img, Q) for img in net.prepare(images[lo:lo + batch_size])])
        if method == "dense":
            probs = _dense_batch(net.fcn, batch, flip)[0]
        elif method == "multicrop":
            probs = _multicrop_batch(model, batch, 5, flip)
        else:
            probs = _center_batch(model, batch, flip)
        out.append(to_numpy(probs).astype(np.float64))
    return np.concatenate(out)


class PosteriorCache:
    """``dataset_posteriors`` of (net, method, Q) computed once and reused by every table row that needs them,
    with the seconds each took (``seconds[key]``)."""

    def __init__(self, images, flip: bool = True, batch_size: int = 64):
        self.images, self.flip, self.batch_size = images, flip, batch_size
        self.probs, self.seconds = {}, {}

    def get(self, net: TestNet, method: str, Q: int):
        if method == "dense+multicrop":
            return fuse([self.get(net, m, Q) for m in ("dense", "multicrop")])
        key = (id(net), method, int(Q))
        if key not in self.probs:
            start = time.perf_counter()
            self.probs[key] = dataset_posteriors(net, self.images, method, Q, self.flip, self.batch_size)
            self.seconds[key] = time.perf_counter() - start
        return self.probs[key]

    def cost(self, net: TestNet, method: str, Q: int) -> float:
        methods = ("dense", "multicrop") if method == "dense+multicrop" else (method,)
        return sum(self.seconds[(id(net), m, int(Q))] for m in methods)


def protocol_error(nets, labels, method: str, scales, cache: PosteriorCache) -> dict:
    """Top-1/top-5 error (and loss) of ``method`` averaged over ``scales``, for one ``TestNet`` or several fused.

    Returns {"top1_err", "top5_err", "loss", "n", "seconds", "probs" (N, classes)}; ``seconds`` is the
    time spent computing the posteriors this row averages (whether or not the cache already held them)."""
    nets = [nets] if isinstance(nets, TestNet) else list(nets)
    check_method(method)
    probs = fuse([fuse([cache.get(net, method, Q) for Q in check_scales(scales, net.model.input_size)])
                  for net in nets])
    seconds = sum(cache.cost(net, method, Q) for net in nets for Q in check_scales(scales, net.model.input_size))
    return {**posterior_errors(probs, labels), "probs": probs, "seconds": seconds}


def posterior_errors(probs, labels) -> dict:
    """{"top1_err", "top5_err", "loss" (mean -log posterior of the true class), "n"} of posteriors (N, classes)."""
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        raise ValueError("no images to score")
    p_true = np.asarray(probs)[np.arange(n), labels]
    return {"top1_err": 1 - topk_correct(probs, labels, 1) / n, "top5_err": 1 - topk_correct(probs, labels, 5) / n,
            "loss": float(-np.log(np.maximum(p_true, 1e-300)).mean()), "n": n}


def evaluate_model(model, batches, prepare=None) -> dict:
    """Mean loss and top-1/top-5 error of ``model`` (eval mode) over ``batches`` of (x, y)."""
    from vggedu.layers import softmax_cross_entropy

    loss_sum, top1, top5, n = 0.0, 0, 0, 0
    for x, y in batches:
        if prepare is not None:
            x, y = prepare(x, y)
        scores = model.forward(x, train=False)
        loss, _ = softmax_cross_entropy(scores, y)
        loss_sum += loss * len(y)
        top1 += topk_correct(scores, y, 1)
        top5 += topk_correct(scores, y, 5)
        n += len(y)
    if n == 0:
        raise ValueError("evaluate: no images to evaluate")
    return {"loss": loss_sum / n, "top1_err": 1 - top1 / n, "top5_err": 1 - top5 / n, "n": n}


def evaluate_checkpoint(path, data: str | None = None, split: str = "test", batch_size: int = 256,
                        n: int | None = None, device: str | None = None) -> dict:
    """Top-1/top-5 error of checkpoint ``path`` on ``split`` of ``data`` (default: the dataset it was trained
    on), one centre crop per image, normalised as in training (mean and scale from the checkpoint)."""
    from vggedu.backend import default_device
    from vggedu.checkpoint import load_checkpoint
    from vggedu.rundata import RunData, load_split

    ckpt = load_checkpoint(path, device=device or default_device())
    model, meta = ckpt.model, ckpt.meta
    run_cfg = meta.get("train_config") or {}
    data = data or run_cfg.get("data")
    if data is None:
        raise ValueError(f"{path} does not say which data it was trained on: pass --data")
    size, holdout = model.input_size, run_cfg.get("holdout", 5000)
    dataset = load_split(data, split, size, holdout, n, run_cfg.get("data_seed", 0))
    check_fits(model, dataset, path, data)
    info = meta.get("input") or _fallback_input(ckpt, path, data)
    rd = RunData(data, dataset, dataset, size, augment=False, mean=info["mean"])
    result = evaluate_model(model, rd.eval_batches(dataset, batch_size),
                            lambda x, y: (to_device(rd.normalise(x, info["scale"]), model.device), y))
    return {**result, "data": data, "split": split, "config": model.config, "classes": dataset.classes}


def check_fits(model, dataset, path, data) -> None:
    """ValueError unless ``dataset``'s images and classes are what ``model`` was built for."""
    if dataset.images.shape[-1] != model.in_channels or len(dataset.classes) != model.num_classes:
        raise ValueError(f"{path} is a net for {model.in_channels}-channel images and {model.num_classes} classes; "
                         f"{data} has {dataset.images.shape[-1]} channels and {len(dataset.classes)} classes")
