"""Speed kernels behind ``vggedu.nn``: the reference layers' arithmetic, faster; lesson 02 shows when each runs.

``vggedu.layers`` holds the reference pairs, written to be read. This module computes the same sums
with less time and memory, and ``vggedu.nn`` calls it through its dispatchers, which keep the
reference signatures (plus ``need_dx`` and ``out=`` buffers for the weight gradients):

    conv_forward(x, w, b, stride, pad) -> (out, cache)    conv_backward(dout, cache, need_dx, out) -> (dx, dw, db)
    maxpool_forward(x, size, stride)   -> (out, cache)    maxpool_backward(dout, cache) -> dx
    linear_backward(dout, cache, out)  -> (dx, dw, db)    (linear_forward: ``layers.linear_forward``)

``conv_forward`` picks one of four convolution kernels; its cache names it (``cache.path``):

``"1x1"``     ``conv_1x1``: a 1x1, stride-1, unpadded convolution (config C) is one GEMM over pixels;
              x itself is the im2col matrix, nothing is copied.
``"cols"``    ``conv_im2col``: im2col by kernel rows (``im2col_rows``), one GEMM; the matrix is cached.
``"blocks"``  ``conv_blocked``: when the im2col matrix would exceed ``block_bytes``, unfold and multiply
              a block of images (or of output rows) at a time through one reused buffer; the padded
              input is cached and unfolded again, block by block, for dw (``weight_grads_blocked``).
``"inside"``  ``conv_inside_taps``: on small maps, where much of im2col is padding zeros, multiply
              only the kernel taps that land inside the input (``tap_ranges``, ``inside_fraction``).

The backward of every path but "inside" computes dx with ``input_grad_col2im_fused``: col2im fused
with the GEMM, one (N*OH*OW, F) @ (F, C) product per kernel offset added where it belongs, never
materialising dout @ W.T. The thresholds are module constants with their measurements beside them;
the dispatchers take them as keyword arguments, so a test can force any path.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from vggedu import layers as L
from vggedu.backend import get_array_module

# im2col matrices larger than this are never built whole: the convolution unfolds and multiplies
# one block of images (or of output rows of one image) at a time through a buffer of this size,
# and its backward unfolds the (cached) padded input again. A whole im2col matrix is 9x the
# input: 460 MB for conv1_2 of VGG-16 at 224x224 and batch 4, which cost 15x that layer's GEMM
# time in allocation and page faults; in 4 MB blocks the GEMMs run from cache-warm memory (block
# sizes 4 to 64 MB measured within noise of each other for VGG-A training; 4 MB best for VGG-16
# inference at 224x224, 0.72 s against 0.78 s at 16 MB).
COLS_BLOCK_BYTES = 4 * 2**20
# On a GPU the same blocking would bound memory, but each block costs kernel launches from Python, and
# no size has been measured there: this guess is used only when asked for (block_bytes=...).
GPU_COLS_BLOCK_BYTES = 256 * 2**20

# Small feature maps: with "same" padding, much of an im2col matrix is padding zeros. A 3x3 kernel
# over a 2x2 map reads padding with 5 of its 9 taps at every pixel (56% of im2col's entries are
# zeros), over 4x4 31%, 8x8 16%, 16x16 8%, 224x224 under 1%. When no more than this share of the
# taps lands inside the input, a stride-1 convolution (forward, dw and dx) multiplies only the taps
# inside (``tap_ranges``): the same sums without the products with zero. Measured at 32x32 batch 64
# on 2 cores, conv4_2 (4x4 maps) forward + backward 69 -> 49 ms, conv5_x (2x2) 19 -> 9 ms each; at
# 16x16 (92% inside) it no longer pays for its extra pieces, hence the threshold. Nor with few
# channels, where the GEMMs are too small for the saved products to outweigh the extra calls
# (C = F = 32 on 4x4 maps: 1.1-1.5x slower, 64: even, 128: 0.6-0.9x), hence the second condition.
INSIDE_TAPS_BELOW = 0.88
INSIDE_MIN_CHANNELS = 64 * 64  # C * F at least this

# The thresholds above, the blocking and the per-tap dx were all measured on a 2-core CPU. On a GPU,
# until a profile there says otherwise (bench/gpu.py), a convolution takes the plain path: the whole
# im2col matrix and one GEMM (7.4 GB for VGG-16's conv1_2 at 224x224 and batch 64: pass block_bytes
# to bound it), and the reference dx, one GEMM and col2im; the dispatchers' keyword arguments still
# force any path on either device.
NO_BLOCKS = 2**62


def default_block_bytes(xp) -> int:
    """``COLS_BLOCK_BYTES`` on the CPU; no blocking on a GPU (``NO_BLOCKS``: not measured there)."""
    return COLS_BLOCK_BYTES if xp is np else NO_BLOCKS


# ----------------------------------------------------------------------------- im2col, blocked


def im2col_rows(x_pad, KH, KW, stride, OH, OW, out=None):
    """``layers.im2col`` one kernel *row* at a time: x_pad (N, Hp, Wp, C) -> cols (N, OH, OW, KH, KW, C).

    In NHWC the KW*C values of one kernel row are contiguous in memory, so a strided view of each
    of the KH kernel rows is copied whole: KH copies of (KW*C)-long runs instead of KH*KW copies of
    C-long ones (for the first layer, C=3, runs of 9 floats instead of 3).
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


def plan_blocks(N, OH, OW, K, itemsize, block_bytes):
    """Pieces ``(n0, n1, r0, r1)`` (images n0:n1, output rows r0:r1) whose im2col rows fit ``block_bytes``."""
    per_row = OW * K * itemsize
    if OH * per_row <= block_bytes:  # whole images
        g = max(1, block_bytes // (OH * per_row))
        return [(n0, min(n0 + g, N), 0, OH) for n0 in range(0, N, g)]
    rows = max(1, block_bytes // per_row)  # blocks of output rows of one image
    return [(n, n + 1, r0, min(r0 + rows, OH)) for n in range(N) for r0 in range(0, OH, rows)]


def unfolded_blocks(x_pad, KH, KW, stride, OH, OW, block_bytes):
    """Yield ``(n0, n1, r0, r1, cols)`` for each block of the output: images n0:n1, output rows r0:r1,
    and their im2col rows (R, KH*KW*C), unfolded into one buffer reused from block to block."""
    xp = get_array_module(x_pad)
    K = KH * KW * x_pad.shape[3]
    blocks = plan_blocks(x_pad.shape[0], OH, OW, K, x_pad.itemsize, block_bytes)
    buf = xp.empty(max((n1 - n0) * (r1 - r0) for n0, n1, r0, r1 in blocks) * OW * K, dtype=x_pad.dtype)
    for n0, n1, r0, r1 in blocks:
        piece = x_pad[n0:n1, r0 * stride : (r1 - 1) * stride + KH]
        cols = im2col_rows(piece, KH, KW, stride, r1 - r0, OW, out=buf)
        yield n0, n1, r0, r1, cols.reshape((n1 - n0) * (r1 - r0) * OW, K)


# ----------------------------------------------------------------------------- only the taps inside


def tap_ranges(size, kernel, pad):
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
        groups = tap_ranges(size, kernel, pad)
        return sum((o1 - o0) * (k1 - k0) for o0, o1, k0, k1 in groups) / (groups[-1][1] * kernel)
    return one_axis(H, KH) * one_axis(W, KW)


def skips_padding(x_shape, w_shape, stride, pad, inside_taps_below=INSIDE_TAPS_BELOW,
                  inside_min_channels=INSIDE_MIN_CHANNELS) -> bool:
    """Whether ``conv_forward`` takes the "inside" path for these shapes (see the constants above)."""
    KH, KW, C, F = w_shape
    return (stride == 1 and 0 < pad < min(KH, KW) and C * F >= inside_min_channels
            and inside_fraction(x_shape[1], x_shape[2], KH, KW, pad) <= inside_taps_below)


def _inside_taps(H, W, OH, OW, KH, KW, pad):
    """``(i, j, oy0, oy1, ox0, ox1)`` per kernel tap: the output rows/cols whose tap (i, j) reads inside
    the input (input row oy - pad + i, column ox - pad + j)."""
    return [(i, j, max(0, pad - i), min(OH, H + pad - i), max(0, pad - j), min(OW, W + pad - j))
            for i in range(KH) for j in range(KW)]


def conv_inside_taps(x, w, b, pad, block_bytes):
    """Stride-1 convolution of x (N, H, W, C) by w (KH, KW, C, F) with zero padding ``pad``,
    multiplying only the taps that land inside x: for each group of output pixels sharing the same
    taps inside (``tap_ranges`` along each axis), an im2col of just those taps and one GEMM, in
    blocks of at most ``block_bytes``. No padded copy of x is made. ``b`` (F,) or None. -> (N, OH, OW, F)."""
    xp = get_array_module(x, w)
    x = xp.ascontiguousarray(x)
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    rows, cols = tap_ranges(H, KH, pad), tap_ranges(W, KW, pad)
    out = xp.empty((N, rows[-1][1], cols[-1][1], F), dtype=xp.result_type(x, w))
    sN, sH, sW, sC = x.strides
    pieces = []  # (images per block, output rows, output cols) of each group of pixels
    need = 0  # elements of the largest block's im2col
    for x0, x1, j0, j1 in cols:
        for y0, y1, i0, i1 in rows:
            per_image = (y1 - y0) * (x1 - x0) * (i1 - i0) * (j1 - j0) * C
            blocks = -(-N * per_image * x.itemsize // block_bytes)
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


def weight_grads_inside_taps(x, dout, w_shape, pad, out=None):
    """dw, db of ``conv_inside_taps``, one GEMM per kernel tap over the pixels where it reads inside x:
    dw[i, j] = x[shifted by (i, j)].T @ dout, (C, M) @ (M, F), M the pixels where the tap is inside."""
    xp = get_array_module(dout)
    KH, KW, C, F = w_shape
    N, H, W, _ = x.shape
    _, OH, OW, _ = dout.shape
    dw, db = _grad_buffers(out, w_shape, dout.dtype, xp)
    for i, j, oy0, oy1, ox0, ox1 in _inside_taps(H, W, OH, OW, KH, KW, pad):
        xs = x[:, oy0 - pad + i : oy1 - pad + i, ox0 - pad + j : ox1 - pad + j].reshape(-1, C)
        xp.matmul(xs.T, dout[:, oy0:oy1, ox0:ox1].reshape(-1, F), out=dw[i, j])
    dout.reshape(-1, F).sum(axis=0, out=db)
    return dw, db


def input_grad_inside_taps(dout, w, pad, x_shape):
    """dx of ``conv_inside_taps``: for each kernel tap, the gradient of the pixels it read inside x,
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


# ----------------------------------------------------------------------------- the other conv kernels


def conv_1x1(x, w, b):
    """A 1x1 convolution with stride 1 and no padding: x (N, H, W, C) reshaped to (N*H*W, C) *is* its
    im2col matrix, so the convolution is one GEMM with w (1, 1, C, F) -> (N, H, W, F)."""
    N, H, W, C = x.shape
    F = w.shape[3]
    out = x.reshape(N * H * W, C) @ w.reshape(C, F)
    out += b
    return out.reshape(N, H, W, F)


def conv_im2col(x, w, b, stride, pad):
    """im2col (by kernel rows) and one GEMM -> (out (N, OH, OW, F), cols (N*OH*OW, KH*KW*C))."""
    xp = get_array_module(x, w)
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    OH, OW = L.conv_output_size(H, KH, stride, pad), L.conv_output_size(W, KW, stride, pad)
    x_pad = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
    cols = im2col_rows(x_pad, KH, KW, stride, OH, OW).reshape(N * OH * OW, KH * KW * C)
    out = cols @ w.reshape(KH * KW * C, F)  # (N*OH*OW, F): already NHWC
    out += b
    return out.reshape(N, OH, OW, F), cols


def conv_blocked(x, w, b, stride, pad, block_bytes):
    """``conv_im2col`` through im2col blocks of at most ``block_bytes`` -> (out (N, OH, OW, F), x_pad)."""
    xp = get_array_module(x, w)
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    OH, OW = L.conv_output_size(H, KH, stride, pad), L.conv_output_size(W, KW, stride, pad)
    x_pad = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
    out = xp.empty((N, OH, OW, F), dtype=xp.result_type(x, w))
    w2 = w.reshape(KH * KW * C, F)
    for n0, n1, r0, r1, cols in unfolded_blocks(x_pad, KH, KW, stride, OH, OW, block_bytes):
        xp.matmul(cols, w2, out=out[n0:n1, r0:r1].reshape(-1, F))  # a view: whole images, or rows of one image
    out += b
    return out, x_pad


def _grad_buffers(out, w_shape, dtype, xp):
    """The ``(dw, db)`` arrays to write into: ``out`` after checking it fits, or new ones."""
    if out is None:
        return xp.empty(w_shape, dtype=dtype), xp.empty(w_shape[-1], dtype=dtype)
    dw, db = out
    if tuple(dw.shape) != tuple(w_shape) or dw.dtype != dtype or tuple(db.shape) != (w_shape[-1],):
        raise ValueError(f"out buffers {tuple(dw.shape)}, {tuple(db.shape)} do not fit dw {tuple(w_shape)}, "
                         f"db ({w_shape[-1]},) of dtype {dtype}")
    return dw, db


def weight_grads(x2, dout2, w_shape, out=None):
    """dw = x2.T @ dout2 reshaped to ``w_shape`` and db = dout2 summed over rows, into ``out`` if given."""
    if out is None:
        return (x2.T @ dout2).reshape(w_shape), dout2.sum(axis=0)
    xp = get_array_module(dout2)
    dw, db = _grad_buffers(out, w_shape, dout2.dtype, xp)
    xp.matmul(x2.T, dout2, out=dw.reshape(x2.shape[1], dout2.shape[1]))
    dout2.sum(axis=0, out=db)
    return dw, db


def weight_grads_blocked(x_pad, dout, w_shape, stride, block_bytes, out=None):
    """``weight_grads`` from the padded input: dw summed over blocks of im2col rows unfolded again."""
    xp = get_array_module(dout)
    KH, KW, C, F = w_shape
    _, OH, OW, _ = dout.shape
    dw, db = _grad_buffers(out, w_shape, dout.dtype, xp)
    dw2, part = dw.reshape(KH * KW * C, F), xp.empty((KH * KW * C, F), dtype=dout.dtype)
    for i, (n0, n1, r0, r1, cols) in enumerate(unfolded_blocks(x_pad, KH, KW, stride, OH, OW, block_bytes)):
        xp.matmul(cols.T, dout[n0:n1, r0:r1].reshape(-1, F), out=part if i else dw2)
        if i:
            dw2 += part
    dout.reshape(-1, F).sum(axis=0, out=db)
    return dw, db


def input_grad_col2im_fused(dout, w, x_shape, stride, pad):
    """dx of a convolution, ``col2im(dout @ W.T)`` without the (N*OH*OW, KH*KW*C) matrix: for each
    kernel offset, the (N*OH*OW, C) gradient of the pixels it read is added back where they came
    from. The same sum as ``layers.conv_backward``'s; less memory, and measured faster on 2 cores."""
    xp = get_array_module(dout, w)
    N, H, W, C = x_shape
    KH, KW, _, F = w.shape
    _, OH, OW, _ = dout.shape
    dout2 = dout.reshape(N * OH * OW, F)
    dx_pad = xp.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=dout.dtype)
    for i in range(KH):
        for j in range(KW):
            dx_pad[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :] += (
                dout2 @ w[i, j].T
            ).reshape(N, OH, OW, C)
    return dx_pad[:, pad : pad + H, pad : pad + W, :] if pad else dx_pad


# ----------------------------------------------------------------------------- dispatchers


class ConvKernelCache(NamedTuple):
    path: str  # "1x1", "cols", "blocks" or "inside" (module docstring)
    data: object  # 1x1 and inside: x itself (leave it unchanged until the backward); cols: the im2col
    #               matrix (N*OH*OW, KH*KW*C); blocks: the padded input (N, H + 2P, W + 2P, C)
    w: object  # (KH, KW, C, F)
    x_shape: tuple  # (N, H, W, C)
    stride: int
    pad: int
    block_bytes: int  # the block size the forward used (the backward unfolds the same blocks)


def conv_forward(x, w, b, stride=1, pad=0, *, block_bytes=None, inside_taps_below=None,
                 inside_min_channels=INSIDE_MIN_CHANNELS):
    """``layers.conv_forward`` by the fastest kernel for these shapes -> (out (N, OH, OW, F), ``ConvKernelCache``).

    ``block_bytes`` (default ``default_block_bytes``), ``inside_taps_below`` (default ``INSIDE_TAPS_BELOW``
    on the CPU, 0, never, on a GPU) and ``inside_min_channels`` override the module's thresholds (tests
    use them to force a path)."""
    L.check_conv_args(x, w, b, stride, pad)
    xp = get_array_module(x, w)
    block_bytes = default_block_bytes(xp) if block_bytes is None else int(block_bytes)
    if inside_taps_below is None:
        inside_taps_below = INSIDE_TAPS_BELOW if xp is np else 0.0
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    shape = tuple(x.shape)
    if KH == KW == 1 and stride == 1 and pad == 0:
        return conv_1x1(x, w, b), ConvKernelCache("1x1", x, w, shape, stride, pad, block_bytes)
    if skips_padding(shape, w.shape, stride, pad, inside_taps_below, inside_min_channels):
        return conv_inside_taps(x, w, b, pad, block_bytes), ConvKernelCache("inside", x, w, shape, stride, pad,
                                                                             block_bytes)
    OH, OW = L.conv_output_size(H, KH, stride, pad), L.conv_output_size(W, KW, stride, pad)
    if N * OH * OW * KH * KW * C * x.itemsize > block_bytes:
        out, x_pad = conv_blocked(x, w, b, stride, pad, block_bytes)
        return out, ConvKernelCache("blocks", x_pad, w, shape, stride, pad, block_bytes)
    out, cols = conv_im2col(x, w, b, stride, pad)
    return out, ConvKernelCache("cols", cols, w, shape, stride, pad, block_bytes)


def conv_backward(dout, cache, need_dx=True, out=None):
    """Gradients of ``conv_forward``: dout (N, OH, OW, F) -> dx (N, H, W, C), dw (KH, KW, C, F), db (F,).

    ``need_dx=False`` skips dx (returns None), e.g. for a net's first layer.
    ``out=(dw, db)``: C-contiguous arrays of those shapes to write the weight gradients into (a layer
    reuses them step after step: no fresh allocation, and no page faults, for every step's dw)."""
    path, data, w, x_shape, stride, pad, block_bytes = cache
    xp = get_array_module(dout)
    dout = xp.ascontiguousarray(dout)
    F = w.shape[3]
    if path == "inside":  # only the taps inside x, as the forward did
        dw, db = weight_grads_inside_taps(data, dout, w.shape, pad, out)
        return (input_grad_inside_taps(dout, w, pad, x_shape) if need_dx else None), dw, db
    dout2 = dout.reshape(-1, F)
    if path == "blocks":
        dw, db = weight_grads_blocked(data, dout, w.shape, stride, block_bytes, out)
    else:  # "cols": the cached im2col matrix; "1x1": x is that matrix
        dw, db = weight_grads(data.reshape(dout2.shape[0], -1), dout2, w.shape, out)
    if not need_dx:
        return None, dw, db
    if path == "1x1":
        return (dout2 @ w.reshape(-1, F).T).reshape(x_shape), dw, db
    if xp is not np:  # the reference dx on a GPU (the fused per-tap version is a CPU measurement)
        N, H, W, C = x_shape
        KH, KW = w.shape[:2]
        dcols = (dout2 @ w.reshape(-1, F).T).reshape(N, dout.shape[1], dout.shape[2], KH, KW, C)
        dx_pad = L.col2im(dcols, (N, H + 2 * pad, W + 2 * pad, C), stride)
        return (dx_pad[:, pad:pad + H, pad:pad + W, :] if pad else dx_pad), dw, db
    return input_grad_col2im_fused(dout, w, x_shape, stride, pad), dw, db


class TiledPoolCache(NamedTuple):
    x: object  # (N, H, W, C)
    out: object  # (N, OH, OW, C): the backward finds each window's maximum again by comparing with it
    size: int


def maxpool_tiled(x, size):
    """Max-pooling whose windows tile x exactly (stride == size, H and W multiples of it: every VGG
    pool). A reshape exposes each window offset as a strided view, and the maximum is size*size - 1
    elementwise ``maximum`` calls; no argmax is stored. -> (out (N, H/size, W/size, C), ``TiledPoolCache``)."""
    xp = get_array_module(x)
    N, H, W, C = x.shape
    xr = x.reshape(N, H // size, size, W // size, size, C)
    out = xr[:, :, 0, :, 0].copy()
    for k in range(1, size * size):
        xp.maximum(out, xr[:, :, k // size, :, k % size], out=out)
    return out, TiledPoolCache(x, out, size)


def maxpool_tiled_backward(dout, cache):
    """dx of ``maxpool_tiled``: the gradient to the first element of each window equal to its maximum."""
    x, out, size = cache
    xp = get_array_module(dout)
    N, OH, OW, C = dout.shape
    dx = xp.empty(x.shape, dtype=dout.dtype)
    xr, dxr = x.reshape(N, OH, size, OW, size, C), dx.reshape(N, OH, size, OW, size, C)
    taken = xp.zeros(out.shape, dtype=bool)  # windows whose maximum already got the gradient
    for k in range(size * size):
        hit = xr[:, :, k // size, :, k % size] == out
        hit &= ~taken
        taken |= hit
        xp.multiply(dout, hit, out=dxr[:, :, k // size, :, k % size])
    return dx


def maxpool_forward(x, size=2, stride=2):
    """``layers.maxpool_forward``, by ``maxpool_tiled`` when the windows tile x -> (out, cache)."""
    L.check_pool_args(x, size)
    if size == stride and x.shape[1] % size == 0 and x.shape[2] % size == 0:
        return maxpool_tiled(x, size)
    return L.maxpool_forward(x, size, stride)


def maxpool_backward(dout, cache):
    """Gradient of ``maxpool_forward``: dout (N, OH, OW, C) -> dx (N, H, W, C)."""
    if isinstance(cache, TiledPoolCache):
        return maxpool_tiled_backward(dout, cache)
    return L.maxpool_backward(dout, cache)


def linear_backward(dout, cache, out=None):
    """``layers.linear_backward`` with ``out=(dw, db)``: arrays of w's and b's shapes to write into."""
    x, w = cache
    dw, db = weight_grads(x, dout, w.shape, out)
    return dout @ w.T, dw, db
