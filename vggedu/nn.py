"""Module objects wrapping the layer pairs; taught in lesson 02.

A ``Module`` keeps what its forward/backward pair needs between the two calls: its parameters
(``params``, local names ``"W"`` and ``"b"``), the gradients from the last backward (``grads``,
same keys), the cache of the last forward, and whether it is training (``train()`` / ``eval()``).
Calling a module runs its forward: ``nn.ReLU()(x)`` is ``nn.ReLU().forward(x)``.
``Sequential`` chains modules and exposes their parameters under ``"<layer name>.<key>"``, e.g.
``"conv3_2.W"``: the same array objects, so an optimizer updating them in place updates the net.

Gradients are overwritten by the next backward (PyTorch's convention): a layer writes each
backward's weight gradients into the same arrays, allocated at its first backward (a fresh
allocation, with its page faults, of every weight gradient every step cost 10-13 % of a VGG-A
training step on 2 cores). To keep a step's gradients, copy them:
``kept = {k: g.copy() for k, g in net.grads.items()}``.

The arithmetic is ``vggedu.layers``'s; conv, max-pool and the FC backward run through the faster
``vggedu.kernels`` (same results, tested against the reference pairs).
Parameters start at zero here; initialisation is the model's job (``vggedu.models``).
"""

from __future__ import annotations

import numpy as np

from vggedu import kernels as K
from vggedu import layers as L
from vggedu.backend import device_of, get_array_module, to_device


class Module:
    """Base class: a named forward/backward pair with parameters, gradients and a train flag."""

    def __init__(self, name: str | None = None):
        self.name = name or type(self).__name__.lower()
        self.params: dict = {}
        self.grads: dict = {}
        self.training = True
        self._cache = None

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    def to(self, device: str | None = None):
        """Move parameters to ``device`` ('cpu' or 'gpu'; None: ``VGGEDU_DEVICE``), in place."""
        for key, value in self.params.items():
            self.params[key] = to_device(value, device)
        self.grads = {}
        return self

    def _grad_buffers(self):
        """``(dW, db)`` for the next backward to write into: the last backward's arrays, so gradients are
        overwritten step after step (module docstring); new ones the first time, or after the parameters
        changed shape, dtype or device."""
        W, b = self.params["W"], self.params["b"]
        dW, db = self.grads.get("W"), self.grads.get("b")
        fits = (dW is not None and db is not None and dW.shape == W.shape and dW.dtype == W.dtype
                and type(dW) is type(W) and dW.flags.c_contiguous and db.shape == b.shape and db.dtype == b.dtype)
        if not fits:
            dW, db = get_array_module(W).empty_like(W), get_array_module(b).empty_like(b)
        return dW, db

    def _need_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward (or after an eval-mode forward)")
        return self._cache

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class Conv2d(Module):
    """KH x KW convolution, stride S, zero padding P: (N, H, W, C) -> (N, OH, OW, F)."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, pad=None, name=None,
                 dtype=np.float32):
        super().__init__(name)
        self.kernel_size, self.stride = kernel_size, stride
        self.pad = kernel_size // 2 if pad is None else pad
        self.params = {
            "W": np.zeros((kernel_size, kernel_size, in_channels, out_channels), dtype=dtype),
            "b": np.zeros(out_channels, dtype=dtype),
        }
        self.need_input_grad = True  # False for a net's first layer: skips one GEMM and col2im

    def forward(self, x):
        out, cache = K.conv_forward(x, self.params["W"], self.params["b"], self.stride, self.pad)
        self._cache = cache if self.training else None  # no im2col buffer kept at test time
        return out

    def backward(self, dout):
        dx, self.grads["W"], self.grads["b"] = K.conv_backward(dout, self._need_cache(), self.need_input_grad,
                                                               out=self._grad_buffers())
        self._cache = None  # free the im2col buffer as soon as it has served
        return dx


class MaxPool2d(Module):
    """size x size max-pooling with the given stride: (N, H, W, C) -> (N, OH, OW, C)."""

    def __init__(self, size=2, stride=2, name=None):
        super().__init__(name)
        self.size, self.stride = size, stride

    def forward(self, x):
        out, self._cache = K.maxpool_forward(x, self.size, self.stride)
        return out

    def backward(self, dout):
        return K.maxpool_backward(dout, self._need_cache())


class ReLU(Module):
    """max(x, 0), any shape.

    ``inplace=True`` (as PyTorch's): the forward writes max(x, 0) over its input and the backward
    writes dx over the incoming gradient, instead of new arrays. Safe inside a net whose layers
    hand each other fresh arrays that nothing else keeps (every VGG: a ReLU's input is a conv or
    FC output, which no cache holds, and its incoming gradient is the dx of the next layer). It
    spares two activation-sized allocations per ReLU per step: measured on conv1_1's ReLU at
    224x224 batch 8, 220 -> 11 ms for the backward, the page faults of a fresh 100 MB array gone.
    Off by default: a caller's arrays are never changed unless it asked.
    """

    def __init__(self, name=None, inplace=False):
        super().__init__(name)
        self.inplace = inplace

    def forward(self, x):
        out, self._cache = L.relu_forward(x, out=x if self.inplace else None)
        return out

    def backward(self, dout):
        return L.relu_backward(dout, self._need_cache(), out=dout if self.inplace else None)


class Linear(Module):
    """Fully connected: (N, D) -> (N, M) = x @ W + b, W of shape (D, M)."""

    def __init__(self, in_features, out_features, name=None, dtype=np.float32):
        super().__init__(name)
        self.params = {
            "W": np.zeros((in_features, out_features), dtype=dtype),
            "b": np.zeros(out_features, dtype=dtype),
        }

    def forward(self, x):
        out, self._cache = L.linear_forward(x, self.params["W"], self.params["b"])
        return out

    def backward(self, dout):
        dx, self.grads["W"], self.grads["b"] = K.linear_backward(dout, self._need_cache(), out=self._grad_buffers())
        return dx


class Dropout(Module):
    """Inverted dropout with drop probability ``p`` while training; the identity in eval mode.

    Two sources of masks. By default ``rng`` (a ``numpy.random.Generator``): replace ``self.rng`` or
    its ``bit_generator.state`` to reproduce or resume a run. When ``sample_keys`` is set (one uint32
    key per sample, on the input's device; the trainer sets it before every training forward from the
    run's seed, the layer's name, the epoch and each sample's position in it), the next forward draws
    its mask on the device from those keys instead (``vggedu.distributed.keyed_dropout_mask``): the
    same sample gets the same mask whatever the batch is split into (data-parallel ranks), on the
    CPU and on the GPU bit for bit, with no host generator and no host->device copy of the mask.
    The keys serve one forward.
    """

    def __init__(self, p=0.5, rng=None, name=None):
        super().__init__(name)
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.sample_keys = None

    def forward(self, x):
        keys, self.sample_keys = self.sample_keys, None
        if keys is not None and self.training and self.p > 0:
            from vggedu.distributed import keyed_dropout_mask

            if tuple(keys.shape) != (x.shape[0],):
                raise ValueError(f"{self.name}: {tuple(keys.shape)} sample keys for a batch of {x.shape[0]}")
            mask = keyed_dropout_mask(keys, x.shape, self.p, x.dtype)
            self._cache = ("mask", mask)
            return x * mask
        out, mask = L.dropout_forward(x, self.p, self.training, self.rng)
        self._cache = ("mask", mask)
        return out

    def backward(self, dout):
        return L.dropout_backward(dout, self._need_cache()[1])


class LocalResponseNorm(Module):
    """Cross-channel LRN (Caffe/PyTorch form, alpha divided by size); see ``layers.lrn_forward``."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0, name=None):
        super().__init__(name)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        out, self._cache = L.lrn_forward(x, self.size, self.alpha, self.beta, self.k)
        return out

    def backward(self, dout):
        return L.lrn_backward(dout, self._need_cache())


class Flatten(Module):
    """(N, H, W, C) -> (N, H*W*C), flattened in (h, w, c) order (row-major NHWC)."""

    def forward(self, x):
        self._cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self._need_cache())


class Sequential(Module):
    """Modules applied in order; parameters exposed flat as ``{"<layer>.<key>": array}``."""

    def __init__(self, *modules, name=None):
        super().__init__(name or "sequential")
        self.layers = list(modules)
        names = [m.name for m in self.layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"layer names must be unique, repeated: {duplicates}")

    def __getitem__(self, name):
        for module in self.layers:
            if module.name == name:
                return module
        raise KeyError(f"no layer named {name!r}; layers: {[m.name for m in self.layers]}")

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    @property
    def params(self):
        return {f"{m.name}.{k}": v for m in self.layers for k, v in m.params.items()}

    @params.setter
    def params(self, value):  # Module.__init__ assigns {}; the layers own the arrays
        if value:
            raise AttributeError("set parameters on the layers (or use load_params)")

    @property
    def grads(self):
        return {f"{m.name}.{k}": v for m in self.layers for k, v in m.grads.items()}

    @grads.setter
    def grads(self, value):
        if value:
            raise AttributeError("gradients are written by backward()")
        for m in getattr(self, "layers", []):
            m.grads = {}

    def load_params(self, params: dict, strict: bool = True):
        """Copy arrays into the layers' parameters by flat name, checking every shape first."""
        own = self.params
        if strict and set(params) != set(own):
            missing, extra = sorted(set(own) - set(params)), sorted(set(params) - set(own))
            raise ValueError(f"parameter names differ: missing {missing}, unexpected {extra}")
        for key, value in params.items():
            if key in own and tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(f"{key}: shape {tuple(value.shape)} does not fit {tuple(own[key].shape)}")
        for key, value in params.items():
            if key in own:
                layer, local = key.rsplit(".", 1)
                target = self[layer].params[local]
                target[...] = to_device(value, device_of(target))

    def forward(self, x):
        for module in self.layers:
            x = module.forward(x)
        return x

    def backward(self, dout):
        for module in reversed(self.layers):
            dout = module.backward(dout)
        return dout

    def train(self):
        for m in self.layers:
            m.train()
        self.training = True
        return self

    def eval(self):
        for m in self.layers:
            m.eval()
        self.training = False
        return self

    def to(self, device: str | None = None):
        for m in self.layers:
            m.to(device)
        return self
