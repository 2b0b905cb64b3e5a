"""Reference solutions to lesson 02's exercises, written the way a student would: NumPy only, from scratch.

``vggedu.exercises`` loads a function from here when a notebook's exercise cell still raises
NotImplementedError, so the lesson runs end to end; ``vggedu.exercises.show_solution(name)`` prints one.
Try the exercise first: these are the answers.

Shapes: x (N, H, W, C) NHWC, w (KH, KW, C, F), b (F,); OH = (H + 2P - KH) // S + 1, OW likewise.
"""

import numpy as np


def im2col(x_pad, KH, KW, stride, OH, OW):
    """x_pad (N, Hp, Wp, C) -> cols (N*OH*OW, KH*KW*C): row r holds the window output pixel r sees."""
    N, _, _, C = x_pad.shape
    cols = np.empty((N, OH, OW, KH, KW, C), dtype=x_pad.dtype)
    for i in range(KH):  # one strided copy per kernel tap (i, j): what that tap reads for every output pixel
        for j in range(KW):
            cols[:, :, :, i, j, :] = x_pad[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :]
    return cols.reshape(N * OH * OW, KH * KW * C)


def col2im(dcols, padded_shape, KH, KW, stride, OH, OW):
    """The adjoint of im2col: dcols (N*OH*OW, KH*KW*C) -> dx_pad (padded_shape), overlaps ADDED (+=)."""
    N, _, _, C = padded_shape
    dcols = dcols.reshape(N, OH, OW, KH, KW, C)
    dx_pad = np.zeros(padded_shape, dtype=dcols.dtype)
    for i in range(KH):
        for j in range(KW):
            dx_pad[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :] += dcols[:, :, :, i, j, :]
    return dx_pad


def conv_forward(x, w, b, stride, pad):
    """Cross-correlation (no kernel flip, as every deep-learning library): im2col and one matrix product."""
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    x_pad = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    cols = im2col(x_pad, KH, KW, stride, OH, OW)  # (N*OH*OW, KH*KW*C)
    out = cols @ w.reshape(KH * KW * C, F) + b  # (N*OH*OW, F)
    return out.reshape(N, OH, OW, F), (cols, w, x.shape, stride, pad)


def conv_backward(dout, cache):
    """dout (N, OH, OW, F) -> dx (N, H, W, C), dw (KH, KW, C, F), db (F,)."""
    cols, w, (N, H, W, C), stride, pad = cache
    KH, KW, _, F = w.shape
    _, OH, OW, _ = dout.shape
    dout2 = dout.reshape(N * OH * OW, F)
    dw = (cols.T @ dout2).reshape(KH, KW, C, F)  # out = cols @ W, so dW = cols^T dout
    db = dout2.sum(axis=0)
    dcols = dout2 @ w.reshape(KH * KW * C, F).T  # and dcols = dout W^T
    dx_pad = col2im(dcols, (N, H + 2 * pad, W + 2 * pad, C), KH, KW, stride, OH, OW)
    return dx_pad[:, pad : pad + H, pad : pad + W, :], dw, db


def maxpool_forward(x, size, stride):
    """x (N, H, W, C) -> out (N, OH, OW, C), OH = (H - size) // stride + 1; the cache keeps each window's
    argmax, the FIRST maximal element in row-major order (so a tie sends the gradient to one element)."""
    N, H, W, C = x.shape
    OH = (H - size) // stride + 1
    OW = (W - size) // stride + 1
    windows = np.empty((N, OH, OW, size * size, C), dtype=x.dtype)
    for i in range(size):
        for j in range(size):
            windows[:, :, :, i * size + j, :] = x[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :]
    argmax = windows.argmax(axis=3)  # np.argmax returns the first of tied maxima
    out = np.take_along_axis(windows, argmax[:, :, :, None, :], axis=3)[:, :, :, 0, :]
    return out, (argmax, x.shape, size, stride)


def maxpool_backward(dout, cache):
    """dout (N, OH, OW, C) -> dx (N, H, W, C): each window's gradient to its argmax; overlapping windows add."""
    argmax, x_shape, size, stride = cache
    _, OH, OW, _ = dout.shape
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for i in range(size):
        for j in range(size):
            dx[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :] += dout * (argmax == i * size + j)
    return dx


def softmax_cross_entropy(scores, y):
    """scores (N, K), y (N,) -> mean loss over the batch, dscores (N, K) = (p - onehot(y)) / N."""
    N = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)  # exp cannot overflow
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(N), y].mean()
    dscores = np.exp(log_p)
    dscores[np.arange(N), y] -= 1
    return float(loss), dscores / N
