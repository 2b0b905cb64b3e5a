"""Layers as forward/backward function pairs; taught in ``notebooks/02_layers_from_scratch.ipynb``.

Every layer is two functions: ``xxx_forward(...) -> (out, cache)`` and
``xxx_backward(dout, cache) -> gradients``. The backward never modifies ``dout``. The same code
runs on NumPy and CuPy arrays (``xp = get_array_module(x)``).

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
are (KH, KW, C, F) and fully connected weights (D, M), so a fully connected layer is
``x @ W + b``. Why: im2col in NHWC copies KH*KW channel-contiguous slabs, and the output of its
GEMM, (N*OH*OW, F), *is* the next NHWC activation, with no transpose. Measured on a 2-core
machine, a NumPy VGG-A trained at 0.93x-1.41x PyTorch CPU's time in NHWC and 2.40x in NCHW.
Weights from NCHW frameworks (PyTorch, Caffe) are converted when they are imported.
"""

from __future__ import annotations

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


def _check_conv(x, w, b, stride, pad):
    _check_float("x", x)
    _check_float("w", w)
    _check_float("b", b)
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


# ----------------------------------------------------------------------------- convolution


def conv_forward_naive(x, w, b, stride=1, pad=0):
    """Convolution by plain loops over output positions: the oracle the fast path is tested against.

    x: (N, H, W, C); w: (KH, KW, C, F); b: (F,)  ->  out: (N, OH, OW, F) with
    OH = (H + 2P - KH) // S + 1 and OW = (W + 2P - KW) // S + 1.
    """
    _check_conv(x, w, b, stride, pad)
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


def im2col(x_pad, KH, KW, stride, OH, OW, out=None):
    """Unfold a padded NHWC input into rows of receptive fields.

    x_pad: (N, Hp, Wp, C)  ->  cols: (N, OH, OW, KH, KW, C); a row ``cols[n, i, j]`` flattened
    is the (KH*KW*C)-vector that output pixel (i, j) sees. In NHWC the KW*C values of one kernel
    row are contiguous in memory, so a strided view of each of the KH kernel rows is copied whole:
    KH copies of (KW*C)-long runs (for the first layer, C=3, that is 9 floats a run, not 3).
    ``out``: a contiguous buffer of at least N*OH*OW*KH*KW*C elements to unfold into (reused).
    """
    xp = get_array_module(x_pad)
    N, _, _, C = x_pad.shape
    sN, sH, sW, sC = x_pad.strides
    if sC != x_pad.itemsize or sW != C * sC:  # the runs below need a C-contiguous pixel layout
        x_pad = xp.ascontiguousarray(x_pad)
        sN, sH, sW, sC = x_pad.strides
    shape = (N, OH, OW, KH, KW * C)
    if out is None:
        cols = xp.empty(shape, dtype=x_pad.dtype)
    else:
        cols = out.reshape(-1)[: N * OH * OW * KH * KW * C].reshape(shape)
    for i in range(KH):
        rows = xp.lib.stride_tricks.as_strided(
            x_pad[:, i:], shape=(N, OH, OW, KW * C), strides=(sN, stride * sH, stride * sW, sC)
        )
        cols[:, :, :, i, :] = rows
    return cols.reshape(N, OH, OW, KH, KW, C)


def col2im(dcols, padded_shape, stride):
    """The adjoint of ``im2col``: add every row's gradient back to the pixels it came from.

    dcols: (N, OH, OW, KH, KW, C)  ->  dx_pad: padded_shape = (N, Hp, Wp, C).
    Overlapping windows (stride < kernel) accumulate, hence ``+=``.
    """
    xp = get_array_module(dcols)
    N, OH, OW, KH, KW, C = dcols.shape
    dx_pad = xp.zeros(padded_shape, dtype=dcols.dtype)
    for i in range(KH):
        for j in range(KW):
            dx_pad[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :] += dcols[:, :, :, i, j, :]
    return dx_pad


# im2col matrices larger than this are never built whole: the convolution unfolds and multiplies
# one block of images (or of output rows of one image) at a time through a buffer of this size,
# and its backward unfolds the (cached) padded input again. A whole im2col matrix is 9x the
# input: 460 MB for conv1_2 of VGG-16 at 224x224 and batch 4, which cost 15x that layer's GEMM
# time in allocation and page faults; in 4 MB blocks the GEMMs run from cache-warm memory (block
# sizes 4 to 64 MB measured within noise of each other for VGG-A training; 4 MB best for VGG-16
# inference at 224x224, 0.72 s against 0.78 s at 16 MB).
COLS_BLOCK_BYTES = 4 * 2**20
# On a GPU the same blocking bounds memory, but each block costs kernel launches from Python: there
# the blocks are 64x larger (a whole VGG-16 conv1_2 im2col at 224x224, batch 64, would be 7.4 GB).
GPU_COLS_BLOCK_BYTES = 256 * 2**20


def _block_limit(xp) -> int:
    return COLS_BLOCK_BYTES if xp is np else GPU_COLS_BLOCK_BYTES


def _blocks(N, OH, OW, K, itemsize, limit):
    """Pieces ``(n0, n1, r0, r1)`` (images n0:n1, output rows r0:r1) whose im2col rows fit ``limit`` bytes."""
    per_row = OW * K * itemsize
    if OH * per_row <= limit:  # whole images
        g = max(1, limit // (OH * per_row))
        return [(n0, min(n0 + g, N), 0, OH) for n0 in range(0, N, g)]
    rows = max(1, limit // per_row)  # blocks of output rows of one image
    return [(n, n + 1, r0, min(r0 + rows, OH)) for n in range(N) for r0 in range(0, OH, rows)]


def _unfolded_blocks(x_pad, KH, KW, stride, OH, OW):
    """Yield ``(n0, n1, r0, r1, cols)`` for each block of the output: images n0:n1, output rows r0:r1,
    and their im2col rows (R, KH*KW*C), unfolded into one buffer reused from block to block."""
    xp = get_array_module(x_pad)
    K = KH * KW * x_pad.shape[3]
    blocks = _blocks(x_pad.shape[0], OH, OW, K, x_pad.itemsize, _block_limit(xp))
    buf = xp.empty(max((n1 - n0) * (r1 - r0) for n0, n1, r0, r1 in blocks) * OW * K, dtype=x_pad.dtype)
    for n0, n1, r0, r1 in blocks:
        piece = x_pad[n0:n1, r0 * stride : (r1 - 1) * stride + KH]
        cols = im2col(piece, KH, KW, stride, r1 - r0, OW, out=buf)
        yield n0, n1, r0, r1, cols.reshape((n1 - n0) * (r1 - r0) * OW, K)


# Small feature maps: with "same" padding, much of an im2col matrix is padding zeros. A 3x3 kernel
# over a 2x2 map reads padding with 5 of its 9 taps at every pixel (56% of im2col's entries are
# zeros), over 4x4 31%, 8x8 16%, 16x16 8%, 224x224 under 1%. When no more than this share of the
# taps lands inside the input, a stride-1 convolution (forward, dw and dx) multiplies only the taps
# inside (``_tap_ranges``): the same sums without the products with zero. Measured at 32x32 batch 64
# on 2 cores, conv4_2 (4x4 maps) forward + backward 69 -> 49 ms, conv5_x (2x2) 19 -> 9 ms each; at
# 16x16 (92% inside) it no longer pays for its extra pieces, hence the threshold. Nor with few
# channels, where the GEMMs are too small for the saved products to outweigh the extra calls
# (C = F = 32 on 4x4 maps: 1.1-1.5x slower, 64: even, 128: 0.6-0.9x), hence the second condition.
INSIDE_TAPS_BELOW = 0.88
INSIDE_MIN_CHANNELS = 64 * 64  # C * F at least this


def _tap_ranges(size, kernel, pad):
    """Along one axis of a stride-1 convolution: ``[(o0, o1, k0, k1), ...]``, the output positions
    o0:o1 grouped by the kernel taps k0:k1 that fall inside the input for every one of them
    (input index o - pad + k). E.g. size 4, kernel 3, pad 1: [(0, 1, 1, 3), (1, 3, 0, 3), (3, 4, 0, 2)]."""
    groups = []
    for o in range(size + 2 * pad - kernel + 1):
        k0, k1 = max(0, pad - o), min(kernel, size + pad - o)
        if groups and groups[-1][2:] == (k0, k1):
            groups[-1] = (groups[-1][0], o + 1, k0, k1)
        else:
            groups.append((o, o + 1, k0, k1))
    return groups


def inside_fraction(H, W, KH, KW, pad):
    """Share of a stride-1 convolution's (output pixel, kernel tap) pairs that read the input, not
    its zero padding: 1.0 without padding, 16/36 = 0.44 for a 3x3 kernel with pad 1 on a 2x2 map."""
    def one_axis(size, kernel):
        groups = _tap_ranges(size, kernel, pad)
        return sum((o1 - o0) * (k1 - k0) for o0, o1, k0, k1 in groups) / (groups[-1][1] * kernel)
    return one_axis(H, KH) * one_axis(W, KW)


def _skips_padding(x_shape, w_shape, stride, pad) -> bool:
    KH, KW, C, F = w_shape
    return (stride == 1 and 0 < pad < min(KH, KW) and C * F >= INSIDE_MIN_CHANNELS
            and inside_fraction(x_shape[1], x_shape[2], KH, KW, pad) <= INSIDE_TAPS_BELOW)


def _conv_inside(x, w, b, pad):
    """Stride-1 convolution of x (N, H, W, C) by w (KH, KW, C, F) with zero padding ``pad``,
    multiplying only the taps that land inside x: for each group of output pixels sharing the same
    taps inside (``_tap_ranges`` along each axis), an im2col of just those taps and one GEMM.
    No padded copy of x is made. ``b`` (F,) or None. -> (N, OH, OW, F)."""
    xp = get_array_module(x, w)
    x = xp.ascontiguousarray(x)
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    rows, cols = _tap_ranges(H, KH, pad), _tap_ranges(W, KW, pad)
    out = xp.empty((N, rows[-1][1], cols[-1][1], F), dtype=xp.result_type(x, w))
    sN, sH, sW, sC = x.strides
    pieces = []  # (images per block, output rows, output cols) of each group of pixels
    need = 0  # elements of the largest block's im2col
    for x0, x1, j0, j1 in cols:
        for y0, y1, i0, i1 in rows:
            per_image = (y1 - y0) * (x1 - x0) * (i1 - i0) * (j1 - j0) * C
            blocks = -(-N * per_image * x.itemsize // _block_limit(xp))
            g = -(-N // blocks)
            pieces.append((g, (y0, y1, i0, i1), (x0, x1, j0, j1)))
            need = max(need, g * per_image)
    buf = xp.empty(need, dtype=x.dtype)
    w_cols = {}  # the kernel's columns j0:j1, contiguous, so that any run of its rows is a matrix
    for g, (y0, y1, i0, i1), (x0, x1, j0, j1) in pieces:
        if (j0, j1) not in w_cols:
            w_cols[(j0, j1)] = xp.ascontiguousarray(w[:, j0:j1])
        kh, kw, ny, nx = i1 - i0, j1 - j0, y1 - y0, x1 - x0
        K = kh * kw * C
        wk = w_cols[(j0, j1)][i0:i1].reshape(K, F)
        for n0 in range(0, N, g):
            n1 = min(N, n0 + g)
            a = buf[: (n1 - n0) * ny * nx * K].reshape(n1 - n0, ny, nx, kh, kw * C)
            for t in range(kh):  # kernel row i0 + t: a run of kw*C contiguous inputs per pixel
                start = x[n0:n1, y0 - pad + i0 + t :, x0 - pad + j0 :]
                a[:, :, :, t, :] = xp.lib.stride_tricks.as_strided(
                    start, shape=(n1 - n0, ny, nx, kw * C), strides=(sN, sH, sW, sC))
            res = a.reshape(-1, K) @ wk
            if b is not None:
                res += b
            out[n0:n1, y0:y1, x0:x1] = res.reshape(n1 - n0, ny, nx, F)
    return out


def _inside_taps(H, W, OH, OW, KH, KW, pad):
    """``(i, j, oy0, oy1, ox0, ox1)`` per kernel tap: the output rows/cols whose tap (i, j) reads inside
    the input (input row oy - pad + i, column ox - pad + j)."""
    return [(i, j, max(0, pad - i), min(OH, H + pad - i), max(0, pad - j), min(OW, W + pad - j))
            for i in range(KH) for j in range(KW)]


def _inside_weight_grads(x, dout, w_shape, pad, out):
    """dw of ``_conv_inside``, one GEMM per kernel tap over the pixels where it reads inside x:
    dw[i, j] = x[shifted by (i, j)].T @ dout, (C, M) @ (M, F), M the pixels where the tap is inside."""
    xp = get_array_module(dout)
    KH, KW, C, F = w_shape
    N, H, W, _ = x.shape
    _, OH, OW, _ = dout.shape
    dw, db = _grad_out(out, w_shape, dout.dtype, xp)
    for i, j, oy0, oy1, ox0, ox1 in _inside_taps(H, W, OH, OW, KH, KW, pad):
        xs = x[:, oy0 - pad + i : oy1 - pad + i, ox0 - pad + j : ox1 - pad + j].reshape(-1, C)
        xp.matmul(xs.T, dout[:, oy0:oy1, ox0:ox1].reshape(-1, F), out=dw[i, j])
    dout.reshape(-1, F).sum(axis=0, out=db)
    return dw, db


def _inside_input_grad(dout, w, pad, x_shape):
    """dx of ``_conv_inside``: for each kernel tap, the gradient of the pixels it read inside x,
    (M, F) @ (F, C), added where they came from; a tap that reads the whole of x (the centre tap of
    a "same" convolution) initialises dx instead of a zero fill."""
    xp = get_array_module(dout, w)
    N, H, W, C = x_shape
    KH, KW, _, F = w.shape
    _, OH, OW, _ = dout.shape
    taps = _inside_taps(H, W, OH, OW, KH, KW, pad)
    taps.sort(key=lambda t: (t[3] - t[2], t[5] - t[4]) != (H, W))  # a whole-image tap first
    dx = None
    for i, j, oy0, oy1, ox0, ox1 in taps:
        part = (dout[:, oy0:oy1, ox0:ox1].reshape(-1, F) @ w[i, j].T).reshape(N, oy1 - oy0, ox1 - ox0, C)
        if dx is None:
            if (oy1 - oy0, ox1 - ox0) == (H, W):
                dx = part
                continue
            dx = xp.zeros(x_shape, dtype=part.dtype)
        dx[:, oy0 - pad + i : oy1 - pad + i, ox0 - pad + j : ox1 - pad + j] += part
    return dx


def conv_forward(x, w, b, stride=1, pad=0):
    """Convolution as im2col + one GEMM (or one GEMM per block of images when im2col would be large).

    x: (N, H, W, C); w: (KH, KW, C, F); b: (F,)
    out: (N, OH, OW, F), OH = (H + 2P - KH) // S + 1, OW = (W + 2P - KW) // S + 1
    cache: (how, data, w, x shape, padded shape, stride, pad), with ``how`` one of
      "cols":   data is the im2col matrix (N*OH*OW, KH*KW*C);
      "padded": data is the padded input (N, H + 2P, W + 2P, C), when the im2col matrix would exceed
                ``COLS_BLOCK_BYTES`` (``GPU_COLS_BLOCK_BYTES`` on a GPU): the GEMM runs block by
                block and the backward unfolds the input again;
      "inside": data is x itself (not a copy: leave it unchanged until the backward), for a small
                map where at most ``INSIDE_TAPS_BELOW`` of the taps land inside x (stride 1, and
                C * F at least ``INSIDE_MIN_CHANNELS``): only those are multiplied (``_conv_inside``).
    """
    _check_conv(x, w, b, stride, pad)
    xp = get_array_module(x, w)
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    OH, OW = conv_output_size(H, KH, stride, pad), conv_output_size(W, KW, stride, pad)
    K = KH * KW * C
    w2 = w.reshape(K, F)
    padded_shape = (N, H + 2 * pad, W + 2 * pad, C)
    if KH == KW == 1 and stride == 1 and pad == 0:
        cols = x.reshape(N * OH * OW, C)  # a 1x1 conv is a GEMM over pixels: no copy needed
    elif _skips_padding(x.shape, w.shape, stride, pad):
        return _conv_inside(x, w, b, pad), ("inside", x, w, x.shape, padded_shape, stride, pad)
    else:
        x_pad = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
        if N * OH * OW * K * x.itemsize > _block_limit(xp):
            out = xp.empty((N, OH, OW, F), dtype=xp.result_type(x, w))
            for n0, n1, r0, r1, cols in _unfolded_blocks(x_pad, KH, KW, stride, OH, OW):
                target = out[n0:n1, r0:r1].reshape(-1, F)  # a view: whole images, or rows of one image
                xp.matmul(cols, w2, out=target)
            out += b
            return out, ("padded", x_pad, w, x.shape, padded_shape, stride, pad)
        cols = im2col(x_pad, KH, KW, stride, OH, OW).reshape(N * OH * OW, K)
    out = cols @ w2  # (N*OH*OW, F): already NHWC
    out += b
    return out.reshape(N, OH, OW, F), ("cols", cols, w, x.shape, padded_shape, stride, pad)


def _grad_out(out, w_shape, dtype, xp):
    """The ``(dw, db)`` arrays to write into: ``out`` after checking it fits, or new ones."""
    if out is None:
        return xp.empty(w_shape, dtype=dtype), xp.empty(w_shape[-1], dtype=dtype)
    dw, db = out
    if tuple(dw.shape) != tuple(w_shape) or dw.dtype != dtype or tuple(db.shape) != (w_shape[-1],):
        raise ValueError(f"out buffers {tuple(dw.shape)}, {tuple(db.shape)} do not fit dw {tuple(w_shape)}, "
                         f"db ({w_shape[-1]},) of dtype {dtype}")
    return dw, db


def _weight_grads(x2, dout2, w_shape, out):
    """dw = x2.T @ dout2 reshaped to ``w_shape`` and db = dout2 summed over rows, into ``out`` if given."""
    if out is None:
        return (x2.T @ dout2).reshape(w_shape), dout2.sum(axis=0)
    xp = get_array_module(dout2)
    dw, db = _grad_out(out, w_shape, dout2.dtype, xp)
    xp.matmul(x2.T, dout2, out=dw.reshape(x2.shape[1], dout2.shape[1]))
    dout2.sum(axis=0, out=db)
    return dw, db


def _blocked_weight_grads(x_pad, dout, w_shape, stride, out):
    """``_weight_grads`` for a cache holding the padded input: dw summed over blocks of im2col rows."""
    xp = get_array_module(dout)
    KH, KW, C, F = w_shape
    _, OH, OW, _ = dout.shape
    dw, db = _grad_out(out, w_shape, dout.dtype, xp)
    dw2, part = dw.reshape(KH * KW * C, F), xp.empty((KH * KW * C, F), dtype=dout.dtype)
    for i, (n0, n1, r0, r1, cols) in enumerate(_unfolded_blocks(x_pad, KH, KW, stride, OH, OW)):
        xp.matmul(cols.T, dout[n0:n1, r0:r1].reshape(-1, F), out=part if i else dw2)
        if i:
            dw2 += part
    dout.reshape(-1, F).sum(axis=0, out=db)
    return dw, db


def conv_backward(dout, cache, need_dx=True, out=None):
    """Gradients of ``conv_forward``.

    dout: (N, OH, OW, F)  ->  dx: (N, H, W, C), dw: (KH, KW, C, F), db: (F,).
    ``need_dx=False`` skips dx (returns None), e.g. for a net's first layer.
    ``out=(dw, db)``: C-contiguous arrays of those shapes to write the weight gradients into (a layer
    reuses them step after step: no fresh allocation, and no page faults, for every step's dw).
    """
    how, data, w, x_shape, padded_shape, stride, pad = cache
    KH, KW, C, F = w.shape
    xp = get_array_module(dout)
    dout = xp.ascontiguousarray(dout)
    N, OH, OW, _ = dout.shape
    dout2 = dout.reshape(N * OH * OW, F)
    if how == "inside":  # only the taps inside x, as the forward did
        dw, db = _inside_weight_grads(data, dout, w.shape, pad, out)
        return (_inside_input_grad(dout, w, pad, x_shape) if need_dx else None), dw, db
    if how == "padded":  # the padded input: unfold it again, block by block (see COLS_BLOCK_BYTES)
        dw, db = _blocked_weight_grads(data, dout, w.shape, stride, out)
    else:
        dw, db = _weight_grads(data, dout2, w.shape, out)
    if not need_dx:
        return None, dw, db
    if KH == KW == 1 and stride == 1 and pad == 0:
        return (dout2 @ w.reshape(C, F).T).reshape(x_shape), dw, db
    # col2im fused with the GEMM: for each kernel offset, the (N*OH*OW, C) gradient of the pixels
    # it read is added back where they came from. The same sum as col2im(dout2 @ W.T), without
    # materialising the (N*OH*OW, KH*KW*C) matrix: less memory, and measured faster on 2 cores.
    dx_pad = xp.zeros(padded_shape, dtype=dout.dtype)
    for i in range(KH):
        for j in range(KW):
            dx_pad[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :] += (
                dout2 @ w[i, j].T
            ).reshape(N, OH, OW, C)
    H, W = x_shape[1:3]
    dx = dx_pad[:, pad : pad + H, pad : pad + W, :] if pad else dx_pad
    return dx, dw, db


# ----------------------------------------------------------------------------- max-pooling


def maxpool_forward(x, size=2, stride=2):
    """Max-pooling over size x size windows, one channel at a time (VGG: 2x2, stride 2).

    x: (N, H, W, C)  ->  out: (N, OH, OW, C), OH = (H - size) // stride + 1 (same for OW).
    Ties: the gradient goes to the *first* maximal element of the window in row-major order
    (as in Caffe and PyTorch), never split between tied elements.
    cache: ("tiled", x, out, size) when the windows tile x exactly (size == stride, H and W
    multiples of it: every VGG pool), else ("strided", argmax offsets (N, OH, OW, C), x shape,
    size, stride).
    """
    _check_float("x", x)
    _check_ndim("x", x, 4, "NHWC (N, H, W, C)")
    N, H, W, C = x.shape
    if size > H or size > W:
        raise ValueError(f"pool window {size}x{size} is larger than the input {H}x{W} (x shape {tuple(x.shape)})")
    xp = get_array_module(x)
    OH, OW = conv_output_size(H, size, stride), conv_output_size(W, size, stride)
    if size == stride and H % size == 0 and W % size == 0:
        # Non-overlapping windows: a reshape exposes each window offset as a strided view, and the
        # maximum is size*size - 1 elementwise np.maximum calls. Backward recomputes the argmax.
        xr = x.reshape(N, OH, size, OW, size, C)
        out = xr[:, :, 0, :, 0].copy()
        for k in range(1, size * size):
            xp.maximum(out, xr[:, :, k // size, :, k % size], out=out)
        return out, ("tiled", x, out, size)
    out = None
    argmax = xp.zeros((N, OH, OW, C), dtype=np.int8 if size * size < 128 else np.int32)
    for k in range(size * size):
        i, j = divmod(k, size)
        slab = x[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :]
        if out is None:
            out = slab.copy()
            continue
        better = slab > out  # strict: on a tie the earlier element keeps the gradient
        xp.copyto(argmax, k, where=better)
        xp.maximum(out, slab, out=out)
    return out, ("strided", argmax, x.shape, size, stride)


def maxpool_backward(dout, cache):
    """Gradient of ``maxpool_forward``: dout (N, OH, OW, C) -> dx (N, H, W, C), routed to the argmax."""
    xp = get_array_module(dout)
    N, OH, OW, C = dout.shape
    if cache[0] == "tiled":
        _, x, out, size = cache
        dx = xp.empty(x.shape, dtype=dout.dtype)
        xr, dxr = x.reshape(N, OH, size, OW, size, C), dx.reshape(N, OH, size, OW, size, C)
        taken = xp.zeros(out.shape, dtype=bool)  # windows whose maximum already got the gradient
        for k in range(size * size):
            hit = xr[:, :, k // size, :, k % size] == out
            hit &= ~taken
            taken |= hit
            xp.multiply(dout, hit, out=dxr[:, :, k // size, :, k % size])
        return dx
    _, argmax, x_shape, size, stride = cache
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


def linear_forward(x, w, b):
    """Fully connected layer: x (N, D), w (D, M), b (M,) -> out (N, M) = x @ w + b."""
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
    return out, (x, w)


def linear_backward(dout, cache, out=None):
    """Gradients of ``linear_forward``: dout (N, M) -> dx (N, D), dw (D, M), db (M,).

    ``out=(dw, db)``: C-contiguous arrays of those shapes to write the weight gradients into."""
    x, w = cache
    dw, db = _weight_grads(x, dout, w.shape, out)
    return dout @ w.T, dw, db


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


def lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """Local response normalisation across channels (config A-LRN, after conv1_1).

    x: (N, H, W, C) -> out: same shape,
        out[..., c] = x[..., c] / (k + alpha / size * sum_{c'} x[..., c']^2) ** beta,
    the sum running over the ``size`` channels centred on c (size // 2 before, (size - 1) // 2
    after, zero-padded at the edges). This is the Caffe / PyTorch form, which divides alpha by
    ``size``; the AlexNet paper writes alpha without the division. VGG's A-LRN used Caffe, with
    AlexNet's constants k=2, n=5, alpha=1e-4, beta=0.75.
    cache: (x, scale, out, size, alpha, beta).
    """
    _check_float("x", x)
    _check_ndim("x", x, 4, "NHWC (N, H, W, C)")
    if size < 1:
        raise ValueError(f"LRN size must be >= 1, got {size}")
    scale = k + (alpha / size) * _channel_window_sum(x * x, size // 2, (size - 1) // 2)
    out = x * scale ** (-beta)
    return out, (x, scale, out, size, alpha, beta)


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
