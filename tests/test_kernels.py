"""The speed kernels of ``vggedu.kernels``, each against the reference pairs of ``vggedu.layers``.

Paths are forced through the dispatchers' keyword arguments (``block_bytes``, ``inside_taps_below``,
``inside_min_channels``) or by calling a kernel directly: no module global is patched.
"""

from __future__ import annotations

import numpy as np
import pytest

from vggedu import kernels as K
from vggedu import layers as L
from vggedu.gradcheck import check_layer, rel_error

TOL = 1e-6  # float64 centred differences with h=1e-5 give around 1e-8 for a correct backward
IM2COL = {"inside_taps_below": 0.0}  # never skip the padding taps
INSIDE = {"inside_taps_below": 1.0, "inside_min_channels": 0}  # skip them on every padded stride-1 conv


def randn(xp, rng, *shape, dtype=np.float64):
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


def reference(x, w, b, stride, pad, dout):
    out, cache = L.conv_forward(x, w, b, stride, pad)
    return out, L.conv_backward(dout, cache)


@pytest.fixture(params=["im2col", "inside taps"])
def conv_path(request):
    """Keyword arguments sending a stride-1 padded conv through im2col, or through the inside-taps kernel."""
    return IM2COL if request.param == "im2col" else INSIDE


# ----------------------------------------------------------------------------- the dispatcher


@pytest.mark.parametrize(
    "N,H,W,C,F,KS,stride,pad",
    [
        (2, 7, 7, 3, 4, 3, 1, 1),
        (2, 8, 6, 2, 3, 3, 2, 1),
        (1, 5, 5, 4, 2, 1, 1, 0),  # config C's 1x1
        (2, 6, 6, 3, 2, 1, 2, 0),
        (1, 5, 7, 2, 3, 3, 1, 2),
        (1, 6, 6, 2, 2, 3, 2, 0),
        (1, 4, 4, 3, 2, 1, 1, 1),
    ],
)
def test_conv_forward_and_backward_match_the_reference(xp, rng, conv_path, N, H, W, C, F, KS, stride, pad):
    x, w, b = randn(xp, rng, N, H, W, C), randn(xp, rng, KS, KS, C, F), randn(xp, rng, F)
    out, cache = K.conv_forward(x, w, b, stride, pad, **conv_path)
    dout = randn(xp, rng, *out.shape)
    ref_out, ref_grads = reference(x, w, b, stride, pad, dout)
    assert out.shape == ref_out.shape and rel_error(out, ref_out) < 1e-12
    for g, g_ref in zip(K.conv_backward(dout, cache), ref_grads):
        assert g.shape == g_ref.shape and rel_error(g, g_ref) < 1e-10
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
    out32, _ = K.conv_forward(x32, w32, b32, stride, pad, **conv_path)
    assert out32.dtype == np.float32
    assert float(xp.max(xp.abs(out32 - L.conv_forward_naive(x32, w32, b32, stride, pad)))) < 1e-5 * max(
        1.0, float(xp.max(xp.abs(ref_out))))


@pytest.mark.parametrize("KS,stride,pad", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (3, 1, 0), (1, 2, 1)])
def test_conv_kernels_gradcheck(xp, rng, conv_path, KS, stride, pad):
    inputs = {"x": randn(xp, rng, 2, 5, 5, 3), "w": randn(xp, rng, KS, KS, 3, 4), "b": randn(xp, rng, 4)}
    errors = check_layer(K.conv_forward, K.conv_backward, inputs, kwargs={"stride": stride, "pad": pad, **conv_path})
    assert max(errors.values()) < TOL, errors


def test_which_path_runs(rng):
    """The cache names the kernel: 1x1, cols, blocks (im2col over ``block_bytes``), inside (small maps)."""
    w, b = randn(np, rng, 3, 3, 64, 64, dtype=np.float32), randn(np, rng, 64, dtype=np.float32)
    for size, path in [(2, "inside"), (4, "inside"), (8, "inside"), (16, "cols"), (32, "cols")]:
        _, cache = K.conv_forward(randn(np, rng, 1, size, size, 64, dtype=np.float32), w, b, 1, 1)
        assert cache.path == path, size
    _, cache = K.conv_forward(randn(np, rng, 1, 4, 4, 64, dtype=np.float32), w, b, 2, 1)  # stride 2: im2col
    assert cache.path == "cols"
    _, cache = K.conv_forward(randn(np, rng, 1, 4, 4, 8), randn(np, rng, 3, 3, 8, 16), randn(np, rng, 16), 1, 1)
    assert cache.path == "cols"  # few channels: im2col
    x = randn(np, rng, 2, 8, 8, 3)
    _, cache = K.conv_forward(x, randn(np, rng, 1, 1, 3, 5), randn(np, rng, 5))
    assert cache.path == "1x1" and cache.data is x  # no copy
    _, cache = K.conv_forward(x, randn(np, rng, 3, 3, 3, 5), randn(np, rng, 5), 1, 1, block_bytes=1024)
    assert cache.path == "blocks" and cache.data.shape == (2, 10, 10, 3)  # the padded input, not im2col's matrix
    assert isinstance(cache, K.ConvKernelCache) and cache.block_bytes == 1024


def test_conv_backward_without_dx(xp, rng, conv_path):
    x, w, b = randn(xp, rng, 2, 4, 4, 3), randn(xp, rng, 3, 3, 3, 2), randn(xp, rng, 2)
    out, cache = K.conv_forward(x, w, b, 1, 1, **conv_path)
    dout = randn(xp, rng, *out.shape)
    dx, dw, db = K.conv_backward(dout, cache)
    none, dw2, db2 = K.conv_backward(dout, cache, need_dx=False)
    assert none is None and rel_error(dw, dw2) == 0 and rel_error(db, db2) == 0


@pytest.mark.parametrize("block", ["1 row", "2 rows", "1 image", "2 images"])
@pytest.mark.parametrize("KS,stride,pad", [(3, 1, 1), (3, 2, 0), (2, 2, 1)])
def test_blocked_conv_matches_whole(xp, rng, block, KS, stride, pad):
    """Large inputs go through im2col in blocks: same output and gradients as the whole-matrix path."""
    x, w, b = randn(xp, rng, 3, 7, 6, 4), randn(xp, rng, KS, KS, 4, 5), randn(xp, rng, 5)
    out, cache = K.conv_forward(x, w, b, stride, pad, **IM2COL)  # this 7x6 map would skip its padding taps
    dout = randn(xp, rng, *out.shape)
    grads = K.conv_backward(dout, cache)
    per_row = out.shape[2] * KS * KS * 4 * x.itemsize  # bytes of im2col rows for one output row
    rows = {"1 row": 1, "2 rows": 2, "1 image": out.shape[1], "2 images": 2 * out.shape[1]}[block]
    limit = {"block_bytes": rows * per_row, **IM2COL}
    out_b, cache_b = K.conv_forward(x, w, b, stride, pad, **limit)
    assert cache.path == "cols" and cache_b.path == "blocks"
    assert cache_b.data.ndim == 4
    assert rel_error(out, out_b) < 1e-12
    for g, g_b in zip(grads, K.conv_backward(dout, cache_b)):
        assert rel_error(g, g_b) < 1e-12
    _, ref_grads = reference(x, w, b, stride, pad, dout)
    for g, g_ref in zip(grads, ref_grads):
        assert rel_error(g, g_ref) < 1e-10
    errors = check_layer(K.conv_forward, K.conv_backward, {"x": x[:2], "w": w, "b": b},
                         kwargs={"stride": stride, "pad": pad, **limit})
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("KS,pad", [(3, 1), (1, 0)])
def test_backward_into_out_buffers_matches(xp, rng, conv_path, KS, pad):
    """``out=(dw, db)`` writes the same numbers into the given arrays; a misfit buffer is refused."""
    x, w, b = randn(xp, rng, 2, 4, 4, 3), randn(xp, rng, KS, KS, 3, 2), randn(xp, rng, 2)
    out, cache = K.conv_forward(x, w, b, 1, pad, **conv_path)
    dout = randn(xp, rng, *out.shape)
    dx, dw, db = K.conv_backward(dout, cache)
    bufs = (xp.full(w.shape, xp.nan), xp.full(b.shape, xp.nan))
    dx2, dw2, db2 = K.conv_backward(dout, cache, out=bufs)
    assert dw2 is bufs[0] and db2 is bufs[1]
    assert rel_error(dx, dx2) == 0 and rel_error(dw, dw2) < 1e-12 and rel_error(db, db2) < 1e-12
    with pytest.raises(ValueError, match="do not fit"):
        K.conv_backward(dout, cache, out=(xp.zeros((KS, KS, 3, 3)), xp.zeros(3)))


def test_linear_backward_into_out_buffers(xp, rng):
    x, w, b = randn(xp, rng, 3, 5), randn(xp, rng, 5, 4), randn(xp, rng, 4)
    out, cache = L.linear_forward(x, w, b)
    dout = randn(xp, rng, *out.shape)
    ref = L.linear_backward(dout, cache)
    bufs = (xp.empty_like(w), xp.empty_like(b))
    got = K.linear_backward(dout, cache, out=bufs)
    assert got[1] is bufs[0] and got[2] is bufs[1]
    assert all(rel_error(a, c) < 1e-12 for a, c in zip(ref, got))
    assert all(rel_error(a, c) < 1e-12 for a, c in zip(ref, K.linear_backward(dout, cache)))


# ----------------------------------------------------------------------------- each kernel directly


def test_im2col_rows_is_the_reference_im2col(xp, rng):
    x = randn(xp, rng, 2, 7, 6, 3)
    for KS, S in [(3, 1), (3, 2), (2, 2), (1, 1)]:
        OH, OW = (7 - KS) // S + 1, (6 - KS) // S + 1
        assert rel_error(K.im2col_rows(x, KS, KS, S, OH, OW), L.im2col(x, KS, KS, S, OH, OW)) == 0
        buf = xp.empty(10_000)
        assert rel_error(K.im2col_rows(x, KS, KS, S, OH, OW, out=buf), L.im2col(x, KS, KS, S, OH, OW)) == 0
    strided = randn(xp, rng, 2, 6, 6, 4)[:, :, :, ::2]  # non-contiguous channels
    assert rel_error(K.im2col_rows(strided, 3, 3, 1, 4, 4), L.im2col(strided, 3, 3, 1, 4, 4)) == 0


def test_plan_blocks_cover_the_output_once():
    for N, OH, OW, Kc, limit in [(3, 5, 4, 9, 4 * 4 * 9 * 8), (3, 5, 4, 9, 1), (4, 5, 4, 9, 10**9), (2, 7, 3, 2, 200)]:
        covered = np.zeros((N, OH), int)
        for n0, n1, r0, r1 in K.plan_blocks(N, OH, OW, Kc, 8, limit):
            covered[n0:n1, r0:r1] += 1
        assert (covered == 1).all()


@pytest.mark.parametrize("KS,stride,pad", [(3, 1, 1), (3, 2, 0), (2, 2, 1), (1, 1, 0)])
def test_im2col_kernels_match_the_reference(xp, rng, KS, stride, pad):
    x, w, b = randn(xp, rng, 3, 7, 6, 4), randn(xp, rng, KS, KS, 4, 5), randn(xp, rng, 5)
    ref_out, ref_cache = L.conv_forward(x, w, b, stride, pad)
    dout = randn(xp, rng, *ref_out.shape)
    ref_dx, ref_dw, ref_db = L.conv_backward(dout, ref_cache)
    out, cols = K.conv_im2col(x, w, b, stride, pad)
    assert rel_error(out, ref_out) < 1e-12 and rel_error(cols, ref_cache.cols) == 0
    dw, db = K.weight_grads(cols, dout.reshape(-1, 5), w.shape)
    assert rel_error(dw, ref_dw) < 1e-12 and rel_error(db, ref_db) < 1e-12
    assert rel_error(K.input_grad_col2im_fused(dout, w, x.shape, stride, pad), ref_dx) < 1e-12
    for limit in (1, 300, 2000):
        out_b, x_pad = K.conv_blocked(x, w, b, stride, pad, limit)
        assert rel_error(out_b, ref_out) < 1e-12
        dw_b, db_b = K.weight_grads_blocked(x_pad, dout, w.shape, stride, limit)
        assert rel_error(dw_b, ref_dw) < 1e-12 and rel_error(db_b, ref_db) < 1e-12
    if KS == 1 and stride == 1 and pad == 0:
        assert rel_error(K.conv_1x1(x, w, b), ref_out) < 1e-12


def test_tap_ranges_and_inside_fraction():
    # a 4-pixel axis, 3-tap kernel, pad 1: pixel 0 misses tap 0, pixel 3 misses tap 2
    assert K.tap_ranges(4, 3, 1) == [(0, 1, 1, 3), (1, 3, 0, 3), (3, 4, 0, 2)]
    assert K.tap_ranges(1, 3, 1) == [(0, 1, 1, 2)]
    assert K.tap_ranges(3, 3, 2) == [(0, 1, 2, 3), (1, 2, 1, 3), (2, 3, 0, 3), (3, 4, 0, 2), (4, 5, 0, 1)]
    assert K.inside_fraction(2, 2, 3, 3, 1) == pytest.approx(16 / 36)  # VGG's conv5 at 32x32 input
    assert K.inside_fraction(4, 4, 3, 3, 1) == pytest.approx(100 / 144)
    assert K.inside_fraction(8, 8, 3, 3, 0) == 1.0
    assert K.inside_fraction(224, 224, 3, 3, 1) > 0.99


@pytest.mark.parametrize("N,H,W,C,F,KS,pad", [
    (2, 2, 2, 4, 3, 3, 1),   # VGG's conv5 at 32x32: every pixel a corner
    (3, 4, 4, 3, 5, 3, 1),
    (2, 1, 1, 3, 2, 3, 1),   # one pixel: only the centre tap is inside
    (2, 3, 5, 2, 4, 3, 1),   # not square
    (2, 6, 6, 3, 2, 5, 2),
    (2, 3, 4, 3, 2, 5, 1),   # pad < (K - 1) / 2: no tap covers the whole map
    (1, 3, 3, 2, 2, 3, 2),   # pad > (K - 1) / 2: outputs beyond the input's edge
])
def test_inside_taps_match_the_reference(xp, rng, N, H, W, C, F, KS, pad):
    """Small maps skip the products with padding: same output and gradients as the reference, in blocks too."""
    x, w, b = randn(xp, rng, N, H, W, C), randn(xp, rng, KS, KS, C, F), randn(xp, rng, F)
    ref, ref_cache = L.conv_forward(x, w, b, 1, pad)
    dout = randn(xp, rng, *ref.shape)
    ref_grads = L.conv_backward(dout, ref_cache)
    for limit in (None, 1):  # whole batch, then one image per block (the smallest block there is)
        out, cache = K.conv_forward(x, w, b, 1, pad, block_bytes=limit, **INSIDE)
        assert cache.path == "inside" and cache.data is x  # no copy of the input kept
        assert rel_error(out, ref) < 1e-12
        assert rel_error(K.conv_inside_taps(x, w, b, pad, limit or 2**20), ref) < 1e-12
        grads = K.conv_backward(dout, cache)
        assert grads[0].flags.c_contiguous
        for g, g_ref in zip(grads, ref_grads):
            assert g.shape == g_ref.shape and rel_error(g, g_ref) < 1e-12
    dw, db = K.weight_grads_inside_taps(x, dout, w.shape, pad)
    assert rel_error(dw, ref_grads[1]) < 1e-12 and rel_error(db, ref_grads[2]) < 1e-12
    assert rel_error(K.input_grad_inside_taps(dout, w, pad, x.shape), ref_grads[0]) < 1e-12


# ----------------------------------------------------------------------------- max-pooling


@pytest.mark.parametrize("shape,size,stride", [((2, 4, 6, 3), 2, 2), ((1, 6, 6, 2), 3, 3), ((1, 5, 5, 2), 2, 2),
                                               ((1, 5, 5, 2), 3, 2)])
def test_maxpool_kernels_match_the_reference_ties_included(xp, shape, size, stride):
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.integers(0, 3, shape).astype(np.float64))  # many ties
    out, cache = K.maxpool_forward(x, size, stride)
    tiles = size == stride and shape[1] % size == 0 and shape[2] % size == 0
    assert isinstance(cache, K.TiledPoolCache) == tiles
    ref_out, ref_cache = L.maxpool_forward(x, size, stride)
    dout = xp.asarray(rng.standard_normal(out.shape))
    assert rel_error(out, ref_out) == 0
    assert rel_error(K.maxpool_backward(dout, cache), L.maxpool_backward(dout, ref_cache)) == 0
    if tiles:
        out2, cache2 = K.maxpool_tiled(x, size)
        assert rel_error(K.maxpool_tiled_backward(dout, cache2), L.maxpool_backward(dout, ref_cache)) == 0


def test_maxpool_kernel_rejects_bad_input():
    with pytest.raises(ValueError, match="pool window 2x2 is larger than the input 1x1"):
        K.maxpool_forward(np.zeros((1, 1, 1, 1)))
    with pytest.raises(TypeError, match="dtype int64"):
        K.maxpool_forward(np.zeros((1, 4, 4, 1), np.int64))


def test_every_kernel_backward_leaves_dout_unchanged(xp, rng):
    x4 = randn(xp, rng, 2, 4, 4, 64)
    w = randn(xp, rng, 3, 3, 64, 64)
    cases = [
        (K.conv_backward, K.conv_forward(x4, w, randn(xp, rng, 64), 1, 1, **IM2COL)),
        (K.conv_backward, K.conv_forward(x4, w, randn(xp, rng, 64), 1, 1, **INSIDE)),
        (K.conv_backward, K.conv_forward(x4, w, randn(xp, rng, 64), 1, 1, block_bytes=4096, **IM2COL)),
        (K.maxpool_backward, K.maxpool_forward(x4)),
        (K.linear_backward, L.linear_forward(randn(xp, rng, 2, 3), randn(xp, rng, 3, 4), randn(xp, rng, 4))),
    ]
    for backward, (out, cache) in cases:
        dout = randn(xp, rng, *out.shape)
        before = dout.copy()
        backward(dout, cache)
        assert bool((dout == before).all()), backward.__name__


def test_conv_kernel_rejects_bad_input():
    with pytest.raises(ValueError, match="channel mismatch"):
        K.conv_forward(np.zeros((1, 4, 4, 3), np.float32), np.zeros((3, 3, 4, 2), np.float32), np.zeros(2, np.float32))
