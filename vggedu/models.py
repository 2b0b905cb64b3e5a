"""``build_vgg``: the VGG nets of Table 1 built from ``vggedu.configs``, initialised and ready to train.

Taught in ``notebooks/03_vgg_family.ipynb`` (the summary it returns: lesson 01).

The net is one ``nn.Sequential`` whose layers carry the paper's names (``conv1_1``, ``relu1_1``,
``pool1``, ..., ``fc6``, ``relu6``, ``drop6``, ``fc7``, ``relu7``, ``drop7``, ``fc8``), so
``model.params`` is ``{"conv1_1.W": (3, 3, 3, 64), "conv1_1.b": (64,), ..., "fc8.b": (1000,)}``
with conv weights (KH, KW, C, F) and fully connected weights (D, M). ``fc6.W``'s rows follow the
order in which the NHWC pool5 output is flattened, (h, w, c); a PyTorch/Caffe fc6 (c, h, w) needs
its rows permuted when imported (``tests/test_models.py`` does it).

Initialisation (``init=``), biases always zero:

``"paper"``  zero-mean normal with standard deviation 0.01 (Sect. 3.1). The paper writes "10^-2
             variance", literally a standard deviation of 0.1. We use std 0.01, the common reading:
             the authors trained with Caffe, whose "gaussian" filler is parametrised by its standard
             deviation (``std: 0.01`` is the usual setting), and reimplementations use std 0.01. A
             std of 0.1 would multiply the activations' scale by about sqrt(2304 * 0.01 / 2) = 3.4
             per layer at a 3x3x256 fan-in (over 10^4 through A's eight convs); std 0.01 shrinks it
             by about 3 per layer instead, which A's depth survives and D's and E's do not (lesson 03).
``"glorot"`` Glorot & Bengio (2010) uniform, U(-a, a) with a = sqrt(6 / (fan_in + fan_out)); the
             paper notes after submission that this trains the deep nets without pre-training.
``"he"``     He et al. (2015) normal, std sqrt(2 / fan_in): keeps the activation variance through
             ReLUs. Not in the paper; for comparison (lesson 03).
``"zeros"``  everything zero: only for loading weights into (checkpoints).

fan_in = KH*KW*C (conv) or D (fc), fan_out = KH*KW*F or M. Seeded: the same ``seed`` gives the
same weights (and the same dropout masks, from ``model.dropout_rng``) on every machine.

The input a net's weights expect travels with them (lesson 09): ``model.preprocessing`` (a
``Preprocessing``: channel order, scale, mean, std) turns uint8 RGB images into that input through
``model.preprocess(images)``, and ``model.class_names`` names the outputs. ``vggedu.pretrained``
sets both for the released weights (Caffe's BGR mean pixel, torchvision's mean/std, ...); a
checkpoint keeps them; a freshly built net has neither (None) until someone sets them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vggedu import layers as L
from vggedu import nn
from vggedu.backend import check_same_device, device_of, get_array_module
from vggedu.configs import FC_WIDTH, LRN_CONSTANTS, canonical, check_knobs, layer_table

INITS = ("paper", "glorot", "he", "zeros")
PAPER_STD = 0.01


def init_weight(shape, fan_in: int, fan_out: int, init: str, rng: np.random.Generator) -> np.ndarray:
    """A float32 weight array of ``shape`` drawn by the named initialiser (see the module docstring)."""
    # float32 draws scaled in place: fc6 alone is 103M numbers, so no float64 temporaries
    if init == "paper":
        w = rng.standard_normal(shape, dtype=np.float32)
        w *= np.float32(PAPER_STD)
        return w
    if init == "glorot":
        a = math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.random(shape, dtype=np.float32)
        w *= np.float32(2 * a)
        w -= np.float32(a)
        return w
    if init == "he":
        w = rng.standard_normal(shape, dtype=np.float32)
        w *= np.float32(math.sqrt(2.0 / fan_in))
        return w
    if init == "zeros":
        return np.zeros(shape, np.float32)
    raise ValueError(f"unknown init {init!r}: expected one of {INITS}")


@dataclass
class Preprocessing:
    """How uint8 RGB pixels become the net's input: ``x = (pixels[..., order] * scale - mean) / std``.

    ``channels``  "RGB", or "BGR" for weights trained on Caffe/OpenCV images (the first conv's input
                  channels are then blue, green, red); ignored for one-channel nets
    ``scale``     applied to the 0..255 pixels first (1 for Caffe/MatConvNet, 1/255 for torchvision)
    ``mean``      (C,) per channel, in ``channels`` order and scaled units, or a full (H, W, C) mean image
                  (old MatConvNet files); for images of another size a mean image counts as its average pixel
    ``std``       (C,) divisor per channel (ones except for torchvision)
    ``source``    where the convention comes from ("caffe", "torchvision", "vggedu", ...), for messages
    """

    channels: str = "RGB"
    scale: float = 1.0
    mean: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    std: np.ndarray = field(default_factory=lambda: np.ones(3, np.float32))
    source: str = ""

    def __post_init__(self):
        if self.channels not in ("RGB", "BGR"):
            raise ValueError(f"preprocessing channels must be 'RGB' or 'BGR', got {self.channels!r}")
        self.scale = float(self.scale)
        self.mean = np.asarray(self.mean, np.float32)
        self.std = np.asarray(self.std, np.float32)
        if self.mean.ndim not in (1, 3) or self.std.shape != self.mean.shape[-1:]:
            raise ValueError(f"preprocessing: mean must be (C,) or (H, W, C) and std (C,), got mean "
                             f"{self.mean.shape} and std {self.std.shape}")

    def __call__(self, images) -> np.ndarray:
        """(N, H, W, C) pixels 0..255 (uint8, RGB) -> (N, H, W, C) float32 net input."""
        shape = tuple(getattr(images, "shape", ()))
        C = self.mean.shape[-1]
        if len(shape) != 4 or shape[-1] != C:
            raise ValueError(f"preprocess: expected images of shape (N, H, W, {C}) (NHWC, {C} channel"
                             f"{'s' if C > 1 else ''}, pixels 0..255), got {shape}")
        x = np.asarray(images).astype(np.float32)  # a fresh array: the caller's images are never touched
        if self.channels == "BGR" and C == 3:
            x = x[..., ::-1]
        if self.scale != 1.0:
            x *= np.float32(self.scale)
        mean = self.mean
        if mean.ndim == 3 and mean.shape[:2] != shape[1:3]:
            mean = mean.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)
        x -= mean
        if np.any(self.std != 1):
            x /= self.std
        return np.ascontiguousarray(x)

    def to_dict(self) -> dict:
        """Plain values (and the mean/std arrays) for a checkpoint header."""
        return {"channels": self.channels, "scale": self.scale, "mean": self.mean, "std": self.std,
                "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(d.get("channels", "RGB"), d.get("scale", 1.0), d["mean"], d["std"], d.get("source", ""))

    def describe(self) -> str:
        def short(a):
            return "(" + ", ".join(f"{float(v):.6g}" for v in a) + ")"

        mean = (f"a {self.mean.shape[0]}x{self.mean.shape[1]} mean image" if self.mean.ndim == 3
                else f"mean {short(self.mean)}")
        std = "" if np.all(self.std == 1) else f", std {short(self.std)}"
        scale = "" if self.scale == 1 else f" x {self.scale:.6g}"
        return f"{self.channels}{scale}, {mean}{std} ({self.source or 'unnamed'} convention)"


class VGG:
    """A VGG net: ``net`` (the ``nn.Sequential``) plus what it was built from and a train/test API.

    ``forward(x, train=False)`` maps x (N, H, W, C) float32 NHWC, H = W = ``input_size``, to class
    scores (N, num_classes). ``loss(x, y)`` runs a training-mode forward (dropout on), the softmax
    loss and the backward, and returns ``(loss, grads)`` with grads keyed like ``params``.
    """

    def __init__(self, config, num_classes=1000, input_size=224, width=1.0, init="paper", seed=0,
                 fc_width=None, in_channels=3, dropout=0.5):
        self.config = canonical(config)
        self.fc_width = FC_WIDTH[self.config] if fc_width is None else fc_width
        check_knobs(num_classes, input_size, width, self.fc_width, in_channels)
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}: expected one of {INITS}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.fc_width = int(self.fc_width)  # plain Python numbers: spec() goes into JSON checkpoint headers
        self.num_classes, self.input_size, self.width = int(num_classes), int(input_size), float(width)
        self.in_channels, self.dropout, self.init, self.seed = int(in_channels), float(dropout), init, seed
        self._rows = layer_table(self.config, self.num_classes, self.input_size, self.width, self.fc_width,
                                 self.in_channels, self.dropout)
        init_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
        self.dropout_rng = np.random.default_rng(dropout_seq)  # shared by drop6 and drop7
        self.net = nn.Sequential(*self._make_layers(np.random.default_rng(init_seq)), name=f"vgg-{self.config}")
        self.net["conv1_1"].need_input_grad = False  # nothing below the first layer needs dx
        self.preprocessing: Preprocessing | None = None  # how images become input (see the module docstring)
        self.class_names: list | None = None  # one name per output, when known

    def _make_layers(self, rng):
        modules = []
        for row in self._rows:
            kind, name = row["kind"], row["name"]
            if kind == "conv":
                K, C, F = row["kernel"], row["in_channels"], row["out_channels"]
                m = nn.Conv2d(C, F, K, stride=row["stride"], pad=row["pad"], name=name)
                m.params["W"] = init_weight((K, K, C, F), K * K * C, K * K * F, self.init, rng)
            elif kind == "fc":
                D, M = row["in_channels"], row["out_channels"]
                m = nn.Linear(D, M, name=name)
                m.params["W"] = init_weight((D, M), D, M, self.init, rng)
            elif kind == "relu":
                m = nn.ReLU(name=name, inplace=True)  # its x is a conv/FC output, its dout a fresh dx
            elif kind == "lrn":
                m = nn.LocalResponseNorm(**LRN_CONSTANTS, name=name)
            elif kind == "maxpool":
                m = nn.MaxPool2d(row["kernel"], row["stride"], name=name)
            elif kind == "flatten":
                m = nn.Flatten(name=name)
            elif kind == "dropout":
                m = nn.Dropout(self.dropout, rng=self.dropout_rng, name=name)
            else:  # pragma: no cover - layer_table only makes the kinds above
                raise ValueError(f"unknown layer kind {kind!r}")
            modules.append(m)
        return modules

    # ------------------------------------------------------------------ parameters and description

    @property
    def params(self) -> dict:
        """``{"conv1_1.W": array, ...}``: the layers' own arrays (in-place updates reach the net)."""
        return self.net.params

    @property
    def grads(self) -> dict:
        """Gradients from the last ``loss`` (or ``backward``), keyed like ``params``."""
        return self.net.grads

    @property
    def device(self) -> str:
        return device_of(self.net["conv1_1"].params["W"])

    def spec(self) -> dict:
        """What ``build_vgg(**spec)`` needs to rebuild this architecture (weights aside)."""
        return dict(config=self.config, width=self.width, input_size=self.input_size, num_classes=self.num_classes,
                    fc_width=self.fc_width, in_channels=self.in_channels, dropout=self.dropout)

    def summary(self) -> list[dict]:
        """One row per layer of ``net`` (see ``vggedu.configs.layer_table``): name, kind, kernel, stride,
        output_shape, params, flops, receptive_field, jump, ... per image."""
        return [dict(row) for row in self._rows]

    def num_params(self) -> int:
        return int(sum(int(np.prod(p.shape)) for p in self.params.values()))

    def load_params(self, params: dict) -> VGG:
        """Copy ``{"conv1_1.W": array, ...}`` (every name, every shape checked before any copy) into the net."""
        self.net.load_params(params, strict=True)
        return self

    def to(self, device: str | None = None) -> VGG:
        """Move the parameters to ``device`` ("cpu" or "gpu"; None: ``VGGEDU_DEVICE``)."""
        self.net.to(device)
        return self

    def train(self) -> VGG:
        self.net.train()
        return self

    def eval(self) -> VGG:
        self.net.eval()
        return self

    # ------------------------------------------------------------------ running

    def _check_input(self, x):
        shape = tuple(getattr(x, "shape", ()))
        want = (self.input_size, self.input_size, self.in_channels)
        if len(shape) != 4 or shape[1:] != want:
            raise ValueError(
                f"VGG-{self.config} expects x of shape (N, {want[0]}, {want[1]}, {want[2]}) (NHWC), got {shape}"
            )
        if getattr(x, "dtype", None) is None or x.dtype.kind != "f":
            raise TypeError(f"x must be a floating-point array (float32), got dtype {getattr(x, 'dtype', type(x))}")
        check_same_device(x, self.device, f"VGG-{self.config}")  # one clear message, not one deep in a layer

    def preprocess(self, images) -> np.ndarray:
        """uint8 RGB images (N, H, W, C), pixels 0..255 -> the float32 input these weights expect
        (``model.preprocessing``); ``forward(preprocess(images))`` gives the source's class scores.
        The images must already be at the net's size (``input_size``) for ``forward``; dense
        evaluation takes larger ones."""
        if self.preprocessing is None:
            raise ValueError(f"VGG-{self.config} has no preprocessing: it was built, not imported or loaded. Set "
                             "model.preprocessing = vggedu.models.Preprocessing(...) (the mean and scale it was "
                             "trained with), or load it with vggedu.pretrained.load / vggedu.load_checkpoint")
        return self.preprocessing(images)

    def forward(self, x, train: bool = False):
        """Class scores (N, num_classes) for x (N, H, W, C). ``train=True``: dropout on, caches kept."""
        self._check_input(x)
        if train:
            self.net.train()
        else:
            self.net.eval()
        return self.net.forward(x)

    __call__ = forward

    def backward(self, dscores):
        """Backward from d loss / d scores after a ``forward(x, train=True)``; fills ``grads``."""
        return self.net.backward(dscores)

    def loss(self, x, y):
        """``(loss, grads)``: mean softmax cross-entropy of a training-mode forward, and its gradients.

        ``grads`` holds the layers' gradient arrays, which the next ``loss`` (or ``backward``) overwrites
        in place (PyTorch's convention, see ``vggedu.nn``): to keep them, copy them,
        ``kept = {k: g.copy() for k, g in grads.items()}``."""
        scores = self.forward(x, train=True)
        loss, dscores = L.softmax_cross_entropy(scores, y)
        self.net.backward(dscores)
        return loss, self.grads

    def predict(self, x, batch_size: int = 64):
        """Predicted classes (N,) from eval-mode scores, ``batch_size`` images at a time."""
        self._check_input(x)
        xp = get_array_module(x)
        if x.shape[0] == 0:
            return xp.zeros(0, dtype=np.int64)
        return xp.concatenate(
            [self.forward(x[i : i + batch_size]).argmax(axis=1) for i in range(0, x.shape[0], batch_size)]
        )

    def __repr__(self):
        return (f"VGG(config={self.config!r}, num_classes={self.num_classes}, input_size={self.input_size}, "
                f"width={self.width:g}, fc_width={self.fc_width}, params={self.num_params():,})")


def build_vgg(config: str, num_classes: int = 1000, input_size: int = 224, width: float = 1.0, init: str = "paper",
              seed: int = 0, **extra) -> VGG:
    """Build config ``A``, ``A-LRN``, ``B``, ``C``, ``D``, ``E`` (Table 1) or ``tiny`` as a ``VGG``.

    Extra keywords: ``fc_width`` (None: 4096, the paper's; smaller for small machines),
    ``in_channels`` (3; 1 for grey images), ``dropout`` (0.5 after fc6 and fc7, Sect. 3.1),
    ``device`` ("cpu"/"gpu": where the parameters live; None leaves them on the CPU).
    """
    device = extra.pop("device", None)
    unknown = sorted(set(extra) - {"fc_width", "in_channels", "dropout"})
    if unknown:
        raise TypeError(f"build_vgg() got unexpected keyword arguments {unknown}")
    model = VGG(config, num_classes, input_size, width, init, seed, **extra)
    return model.to(device) if device is not None else model

