"""Reference layers as forward/backward function pairs; taught in ``notebooks/02_layers_from_scratch.ipynb``.

Every layer is two functions: ``xxx_forward(...) -> (out, cache)`` and ``xxx_backward(dout, cache)
-> gradients``; caches are named tuples, and a backward never modifies ``dout``. The same code runs on
NumPy and CuPy (``xp = get_array_module(x)``). These are the plain algorithms, to read; ``vggedu.nn``
runs the same arithmetic through the faster ``vggedu.kernels``, which is tested against this module.

Notation
--------
N       batch size
H, W    input height and width
C       input channels
F       output channels (number of filters)
KH, KW  kernel height and width (3x3 in VGG, 1x1 for three layers of config C)
S       stride
P       zero padding on every side
OH, OW  output height and width: OH = (H + 2P - KH) // S + 1, OW = (W + 2P - KW) // S + 1
D       features into a fully connected layer, M features out

Layout (decided once, used everywhere)
--------------------------------------
Activations are NHWC (channels last, as in TensorFlow/Keras/JAX and MatConvNet), conv weights
(KH, KW, C, F), fully connected weights (D, M): a fully connected layer is ``x @ W + b``. Why: im2col
in NHWC copies channel-contiguous slabs, and its GEMM's output, (N*OH*OW, F), *is* the next NHWC
activation. Measured on 2 cores, a NumPy VGG-A trained at 0.93x-1.41x PyTorch CPU's time in NHWC,
2.40x in NCHW. Weights from NCHW frameworks (PyTorch, Caffe) are converted when imported.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from vggedu.backend import get_array_module

# ----------------------------------------------------------------------------- input checks


def _check_float(name, a):
    if not hasattr(a, "dtype") or a.dtype.kind != "f":
        dtype = getattr(a, "dtype", type(a).__name__)
        raise TypeError(f"{name} must be a floating-point array, got dtype {dtype}")


def _check_ndim(name, a, ndim, layout):
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {tuple(a.shape)}")


def conv_output_size(size: int, kernel: int, stride: int = 1, pad: int = 0) -> int:
    """Output length along one axis: ``(size + 2 * pad - kernel) // stride + 1``."""
    return (size + 2 * pad - kernel) // stride + 1


def check_conv_args(x, w, b, stride, pad):
    """Raise a clear error unless x (N, H, W, C), w (KH, KW, C, F), b (F,), stride and pad fit together."""
    for name, a in (("x", x), ("w", w), ("b", b)):
        _check_float(name, a)
    _check_ndim("x", x, 4, "NHWC (N, H, W, C)")
    _check_ndim("w", w, 4, "(KH, KW, C, F)")
    if x.shape[3] != w.shape[2]:
        raise ValueError(
            f"channel mismatch: x has C={x.shape[3]} channels (shape {tuple(x.shape)}) but "
            f"w expects C={w.shape[2]} (shape {tuple(w.shape)})"
        )
    if tuple(b.shape) != (w.shape[3],):
        raise ValueError(f"b must have shape ({w.shape[3]},) to match w, got {tuple(b.shape)}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    if int(pad) != pad or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    H, W = x.shape[1:3]
    KH, KW = w.shape[:2]
    if KH > H + 2 * pad or KW > W + 2 * pad:
        raise ValueError(
            f"kernel {KH}x{KW} is larger than the padded input {H + 2 * pad}x{W + 2 * pad} "
            f"(x shape {tuple(x.shape)}, pad {pad})"
        )


def check_pool_args(x, size):
    """Raise a clear error unless x is a float (N, H, W, C) array at least size x size."""
    _check_float("x", x)
    _check_ndim("x", x, 4, "NHWC (N, H, W, C)")
    if size > x.shape[1] or size > x.shape[2]:
        raise ValueError(f"pool window {size}x{size} is larger than the input {x.shape[1]}x{x.shape[2]} "
                         f"(x shape {tuple(x.shape)})")


# ----------------------------------------------------------------------------- convolution


def conv_forward_naive(x, w, b, stride=1, pad=0):
    """Convolution by plain loops over output positions: the oracle everything else is tested against.

    x: (N, H, W, C); w: (KH, KW, C, F); b: (F,)  ->  out: (N, OH, OW, F), OH and OW as in ``conv_forward``."""
    check_conv_args(x, w, b, stride, pad)
    xp = get_array_module(x, w)
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    OH, OW = conv_output_size(H, KH, stride, pad), conv_output_size(W, KW, stride, pad)
    x_pad = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = xp.zeros((N, OH, OW, F), dtype=x.dtype)
    for n in range(N):
        for i in range(OH):
            for j in range(OW):
                window = x_pad[n, i * stride : i * stride + KH, j * stride : j * stride + KW, :]
                for f in range(F):
                    out[n, i, j, f] = xp.sum(window * w[:, :, :, f]) + b[f]
    return out


def im2col(x_pad, KH, KW, stride, OH, OW):
    """Unfold a padded NHWC input into rows of receptive fields.

    x_pad: (N, Hp, Wp, C)  ->  cols: (N, OH, OW, KH, KW, C). Flattened, the row ``cols[n, i, j]``
    is the (KH*KW*C)-vector that output pixel (i, j) of image n sees. One strided copy per kernel
    offset (i, j): the input pixels that offset reads, for every output pixel at once.
    """
    xp = get_array_module(x_pad)
    N, _, _, C = x_pad.shape
    cols = xp.empty((N, OH, OW, KH, KW, C), dtype=x_pad.dtype)
    for i in range(KH):
        for j in range(KW):
            cols[:, :, :, i, j, :] = x_pad[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :]
    return cols


def col2im(dcols, padded_shape, stride):
    """The adjoint of ``im2col``: add every row's gradient back to the pixels it came from.

    dcols: (N, OH, OW, KH, KW, C)  ->  dx_pad: padded_shape = (N, Hp, Wp, C). Where windows
    overlap (stride < kernel) a pixel was read by several rows, so its gradients are *added* (``+=``).
    """
    xp = get_array_module(dcols)
    N, OH, OW, KH, KW, C = dcols.shape
    dx_pad = xp.zeros(padded_shape, dtype=dcols.dtype)
    for i in range(KH):
        for j in range(KW):
            dx_pad[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :] += dcols[:, :, :, i, j, :]
    return dx_pad


class ConvCache(NamedTuple):
    cols: object  # (N*OH*OW, KH*KW*C): the im2col matrix
    w: object  # (KH, KW, C, F)
    x_shape: tuple  # (N, H, W, C)
    stride: int
    pad: int


def conv_forward(x, w, b, stride=1, pad=0):
    """Convolution as im2col and one matrix product (GEMM).

    x: (N, H, W, C); w: (KH, KW, C, F); b: (F,)  ->  out: (N, OH, OW, F), with
    OH = (H + 2P - KH) // S + 1, OW = (W + 2P - KW) // S + 1;
    cache: ``ConvCache`` (cols (N*OH*OW, KH*KW*C), w, x shape, stride, pad).
    """
    check_conv_args(x, w, b, stride, pad)
    xp = get_array_module(x, w)
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    OH, OW = conv_output_size(H, KH, stride, pad), conv_output_size(W, KW, stride, pad)
    x_pad = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    cols = im2col(x_pad, KH, KW, stride, OH, OW).reshape(N * OH * OW, KH * KW * C)
    out = cols @ w.reshape(KH * KW * C, F) + b  # (N*OH*OW, F): already NHWC
    return out.reshape(N, OH, OW, F), ConvCache(cols, w, tuple(x.shape), stride, pad)


def conv_backward(dout, cache):
    """Gradients of ``conv_forward``: dout (N, OH, OW, F) -> dx (N, H, W, C), dw (KH, KW, C, F), db (F,).

    The forward was out = cols @ W (+ b), so, as for any matrix product,
        dW = cols.T @ dout      (KH*KW*C, N*OH*OW) @ (N*OH*OW, F)
        dcols = dout @ W.T      (N*OH*OW, F) @ (F, KH*KW*C)
    and dx is dcols folded back onto the input by ``col2im`` (the padding cut off).
    """
    cols, w, x_shape, stride, pad = cache
    KH, KW, C, F = w.shape
    N, H, W, _ = x_shape
    _, OH, OW, _ = dout.shape
    dout2 = dout.reshape(N * OH * OW, F)
    dw = (cols.T @ dout2).reshape(w.shape)
    db = dout2.sum(axis=0)
    dcols = (dout2 @ w.reshape(KH * KW * C, F).T).reshape(N, OH, OW, KH, KW, C)
    dx_pad = col2im(dcols, (N, H + 2 * pad, W + 2 * pad, C), stride)
    return dx_pad[:, pad : pad + H, pad : pad + W, :], dw, db


# ----------------------------------------------------------------------------- max-pooling


class PoolCache(NamedTuple):
    argmax: object  # (N, OH, OW, C): index k = i * size + j of each window's maximum
    x_shape: tuple  # (N, H, W, C)
    size: int
    stride: int


def maxpool_forward(x, size=2, stride=2):
    """Max-pooling over size x size windows, one channel at a time (VGG: 2x2, stride 2).

    x: (N, H, W, C)  ->  out: (N, OH, OW, C), OH = (H - size) // stride + 1 (same for OW); cache:
    ``PoolCache``. The loop runs over the size*size window offsets, each a strided view of x. Ties: the
    *first* maximal element of a window in row-major order keeps the gradient (as in Caffe and PyTorch)."""
    check_pool_args(x, size)
    xp = get_array_module(x)
    N, H, W, C = x.shape
    OH, OW = conv_output_size(H, size, stride), conv_output_size(W, size, stride)
    out = x[:, 0 : stride * OH : stride, 0 : stride * OW : stride, :].copy()  # offset (0, 0) of every window
    argmax = xp.zeros((N, OH, OW, C), dtype=np.int32)
    for k in range(1, size * size):
        i, j = divmod(k, size)
        slab = x[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :]
        better = slab > out  # strict: on a tie the earlier element stays the maximum
        argmax = xp.where(better, k, argmax)
        out = xp.where(better, slab, out)
    return out, PoolCache(argmax, tuple(x.shape), size, stride)


def maxpool_backward(dout, cache):
    """Gradient of ``maxpool_forward``: dout (N, OH, OW, C) -> dx (N, H, W, C). Each window's gradient
    goes to its maximum only (the others did not affect the output); overlapping windows add theirs."""
    argmax, x_shape, size, stride = cache
    xp = get_array_module(dout)
    _, OH, OW, _ = dout.shape
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    for k in range(size * size):
        i, j = divmod(k, size)
        dx[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :] += dout * (argmax == k)
    return dx


# ----------------------------------------------------------------------------- ReLU


def relu_forward(x, out=None):
    """ReLU: x (any shape) -> out = max(x, 0), same shape; cache: out (its sign is the mask).

    ``out``: an array of x's shape to write into; ``out=x`` overwrites the input (in place)."""
    _check_float("x", x)
    xp = get_array_module(x)
    out = xp.maximum(x, 0, out=out)
    return out, out


def relu_backward(dout, cache, out=None):
    """Gradient of ReLU: dout (any shape) -> dx = dout where the output was positive, else 0.

    ``out``: an array of dout's shape to write dx into; ``out=dout`` overwrites the incoming
    gradient (only for a caller that owns it, as ``nn.ReLU(inplace=True)`` inside a net)."""
    return get_array_module(dout).multiply(dout, cache > 0, out=out)  # the mask: 8x faster than np.where here


# ----------------------------------------------------------------------------- fully connected


class LinearCache(NamedTuple):
    x: object  # (N, D)
    w: object  # (D, M)


def linear_forward(x, w, b):
    """Fully connected layer: x (N, D), w (D, M), b (M,) -> out (N, M) = x @ w + b; cache: ``LinearCache``."""
    for name, a in (("x", x), ("w", w), ("b", b)):
        _check_float(name, a)
    _check_ndim("x", x, 2, "(N, D)")
    _check_ndim("w", w, 2, "(D, M)")
    if x.shape[1] != w.shape[0]:
        raise ValueError(
            f"shape mismatch: x {tuple(x.shape)} has D={x.shape[1]} but w {tuple(w.shape)} expects D={w.shape[0]}"
        )
    if tuple(b.shape) != (w.shape[1],):
        raise ValueError(f"b must have shape ({w.shape[1]},) to match w, got {tuple(b.shape)}")
    out = x @ w
    out += b
    return out, LinearCache(x, w)


def linear_backward(dout, cache):
    """Gradients of ``linear_forward``: dout (N, M) -> dx (N, D) = dout @ w.T, dw (D, M) = x.T @ dout,
    db (M,) = dout summed over the batch."""
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


# ----------------------------------------------------------------------------- dropout


def dropout_forward(x, p, train, rng):
    """Inverted dropout: keep each unit with probability 1 - p and scale it by 1 / (1 - p).

    x: any shape -> out: same shape. Identity when ``train`` is False (nothing to rescale at test
    time). ``rng`` is a ``numpy.random.Generator``: the only source of randomness, so a seeded
    generator gives a reproducible mask. cache: the scaled mask (or None when not training).
    """
    _check_float("x", x)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1), got {p!r}")
    if not train or p == 0.0:
        return x, None
    xp = get_array_module(x)
    keep = rng.random(x.shape, dtype=np.float32) >= p
    mask = xp.asarray(keep, dtype=x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dout, cache):
    """Gradient of ``dropout_forward``: dout (any shape) -> dx = dout * mask (dout when not training)."""
    return dout if cache is None else dout * cache


# ----------------------------------------------------------------------------- LRN


def _channel_window_sum(a, before, after):
    """s[..., c] = sum of a[..., c - before : c + after + 1] along the last axis, zero beyond the edges."""
    xp = get_array_module(a)
    C = a.shape[-1]
    padded = xp.pad(a, [(0, 0)] * (a.ndim - 1) + [(before, after)])
    s = xp.zeros_like(a)
    for d in range(before + after + 1):
        s += padded[..., d : d + C]
    return s


class LRNCache(NamedTuple):
    x: object  # (N, H, W, C)
    scale: object  # (N, H, W, C): k + alpha / size * (sum of squares over the window)
    out: object  # (N, H, W, C)
    size: int
    alpha: float
    beta: float


def lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """Local response normalisation across channels (config A-LRN, after conv1_1).

    x: (N, H, W, C) -> out: same shape,
        out[..., c] = x[..., c] / (k + alpha / size * sum_{c'} x[..., c']^2) ** beta,
    the sum running over the ``size`` channels centred on c (size // 2 before, (size - 1) // 2
    after, zero-padded at the edges). This is the Caffe / PyTorch form, which divides alpha by
    ``size``; the AlexNet paper writes alpha without the division. VGG's A-LRN used Caffe, with
    AlexNet's constants k=2, n=5, alpha=1e-4, beta=0.75. cache: ``LRNCache``.
    """
    _check_float("x", x)
    _check_ndim("x", x, 4, "NHWC (N, H, W, C)")
    if size < 1:
        raise ValueError(f"LRN size must be >= 1, got {size}")
    scale = k + (alpha / size) * _channel_window_sum(x * x, size // 2, (size - 1) // 2)
    out = x * scale ** (-beta)
    return out, LRNCache(x, scale, out, size, alpha, beta)


def lrn_backward(dout, cache):
    """Gradient of ``lrn_forward``: dout (N, H, W, C) -> dx (N, H, W, C).

    dx_i = dout_i * scale_i^-beta - (2 alpha beta / size) x_i sum_{j: i in window(j)} dout_j out_j / scale_j
    """
    x, scale, out, size, alpha, beta = cache
    t = dout * out / scale
    # channel i lies in the window of j for j in [i - (size-1)//2, i + size//2]: the window reversed
    back = _channel_window_sum(t, (size - 1) // 2, size // 2)
    return dout * scale ** (-beta) - (2.0 * alpha * beta / size) * x * back


# ----------------------------------------------------------------------------- loss


def softmax_cross_entropy(scores, y):
    """Softmax followed by the multinomial logistic loss (the paper's objective), mean over the batch.

    scores: (N, K) logits; y: (N,) integer labels in [0, K)  ->  loss (Python float),
    dscores: (N, K) = (softmax(scores) - onehot(y)) / N. Stable for logits of any size: the row
    maximum is subtracted before exponentiating and log-softmax is formed without log(exp()).
    """
    _check_float("scores", scores)
    _check_ndim("scores", scores, 2, "(N, K)")
    xp = get_array_module(scores)
    N, K = scores.shape
    y = xp.asarray(y)
    if y.ndim != 1 or y.shape[0] != N:
        raise ValueError(f"labels y must have shape ({N},) to match scores {tuple(scores.shape)}, got {tuple(y.shape)}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"labels y must be integers, got dtype {y.dtype}")
    if N and (int(y.min()) < 0 or int(y.max()) >= K):
        raise ValueError(f"labels out of range: expected 0 <= y < {K}, got min {int(y.min())}, max {int(y.max())}")
    if not bool(xp.isfinite(scores).all()):
        raise ValueError("scores contain NaN or infinity (has training diverged? try a lower learning rate)")
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_norm = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_norm
    rows = xp.arange(N)
    loss = -float(log_probs[rows, y].mean())
    dscores = xp.exp(log_probs)
    dscores[rows, y] -= 1
    dscores /= N
    return loss, dscores
