"""The reference layer pairs: the naive oracle, cs231n's published vectors, numerical gradients, clear errors.

The speed kernels of ``vggedu.kernels`` are tested against these in ``tests/test_kernels.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vggedu import layers as L
from vggedu.gradcheck import check_layer, rel_error

TOL = 1e-6  # float64 centred differences with h=1e-5 give around 1e-8 for a correct backward


def randn(xp, rng, *shape, dtype=np.float64):
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


# ----------------------------------------------------------------------------- conv


@pytest.mark.parametrize(
    "N,H,W,C,F,K,stride,pad",
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
def test_conv_forward_matches_naive(xp, rng, N, H, W, C, F, K, stride, pad):
    x = randn(xp, rng, N, H, W, C, dtype=np.float32)
    w = randn(xp, rng, K, K, C, F, dtype=np.float32)
    b = randn(xp, rng, F, dtype=np.float32)
    out, _ = L.conv_forward(x, w, b, stride, pad)
    ref = L.conv_forward_naive(x, w, b, stride, pad)
    assert out.shape == ref.shape == (N, (H + 2 * pad - K) // stride + 1, (W + 2 * pad - K) // stride + 1, F)
    assert out.dtype == np.float32
    assert float(xp.max(xp.abs(out - ref))) < 1e-5 * max(1.0, float(xp.max(xp.abs(ref))))


def test_conv_naive_against_hand_computed():
    x = np.arange(9, dtype=np.float64).reshape(1, 3, 3, 1)
    w = np.ones((3, 3, 1, 1))
    out = L.conv_forward_naive(x, w, np.zeros(1), stride=1, pad=1)
    # top-left output sees x[0:2, 0:2] = 0 + 1 + 3 + 4; the centre sees everything
    assert out[0, 0, 0, 0] == 8 and out[0, 1, 1, 0] == 36


@pytest.mark.parametrize("K,stride,pad", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (3, 1, 0), (1, 2, 1)])
def test_conv_backward_gradcheck(xp, rng, K, stride, pad):
    inputs = {"x": randn(xp, rng, 2, 5, 5, 3), "w": randn(xp, rng, K, K, 3, 4), "b": randn(xp, rng, 4)}
    errors = check_layer(L.conv_forward, L.conv_backward, inputs, kwargs={"stride": stride, "pad": pad})
    assert max(errors.values()) < TOL, errors


# ----------------------------------------------------------------------------- pool, relu, fc


def test_maxpool_forward_values(xp):
    x = xp.asarray(np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1))
    out, _ = L.maxpool_forward(x)
    assert out[0, :, :, 0].tolist() == [[5, 7], [13, 15]]


@pytest.mark.parametrize("size,stride", [(2, 2), (3, 2), (2, 1)])
def test_maxpool_backward_gradcheck(xp, size, stride):
    # distinct values, so no window has a tie and the max is differentiable
    x = xp.asarray(np.random.default_rng(1).permutation(2 * 6 * 6 * 3).reshape(2, 6, 6, 3) / 7.0)
    errors = check_layer(L.maxpool_forward, L.maxpool_backward, {"x": x}, kwargs={"size": size, "stride": stride})
    assert errors["x"] < TOL, errors


def test_maxpool_tie_goes_to_first_element(xp):
    x = xp.zeros((1, 2, 2, 1), dtype=np.float64)
    out, cache = L.maxpool_forward(x)
    dx = L.maxpool_backward(xp.ones_like(out), cache)
    assert dx[0, :, :, 0].tolist() == [[1, 0], [0, 0]]


def test_relu_backward_gradcheck(xp, rng):
    x = randn(xp, rng, 3, 4, 5)
    x[xp.abs(x) < 1e-3] = 0.5  # keep away from the kink
    assert check_layer(L.relu_forward, L.relu_backward, {"x": x})["x"] < TOL


def test_linear_backward_gradcheck(xp, rng):
    inputs = {"x": randn(xp, rng, 4, 6), "w": randn(xp, rng, 6, 3), "b": randn(xp, rng, 3)}
    errors = check_layer(L.linear_forward, L.linear_backward, inputs)
    assert max(errors.values()) < TOL, errors


# ----------------------------------------------------------------------------- dropout


def test_dropout_backward_gradcheck(xp, rng):
    x = randn(xp, rng, 5, 7)

    def forward(x):  # the same mask on every call: a fresh generator from the same seed
        return L.dropout_forward(x, 0.3, True, np.random.default_rng(42))

    assert check_layer(forward, L.dropout_backward, {"x": x})["x"] < TOL


def test_dropout_is_inverted_and_identity_at_test(xp):
    x = xp.ones((200, 500), dtype=np.float32)
    out, _ = L.dropout_forward(x, 0.5, True, np.random.default_rng(0))
    kept = float((out > 0).mean())
    assert abs(kept - 0.5) < 0.01 and abs(float(out.mean()) - 1.0) < 0.02
    assert set(np.unique(np.asarray(out.tolist())).tolist()) <= {0.0, 2.0}
    same, cache = L.dropout_forward(x, 0.5, False, np.random.default_rng(0))
    assert same is x and cache is None


def test_dropout_same_seed_same_mask(xp):
    x = xp.ones((10, 10), dtype=np.float32)
    a, _ = L.dropout_forward(x, 0.5, True, np.random.default_rng(3))
    b, _ = L.dropout_forward(x, 0.5, True, np.random.default_rng(3))
    assert bool((a == b).all())


# ----------------------------------------------------------------------------- LRN


def test_lrn_backward_gradcheck(xp, rng):
    x = randn(xp, rng, 2, 3, 3, 7) * 2
    kw = {"size": 5, "alpha": 1e-1, "beta": 0.75, "k": 2.0}  # a large alpha makes the check sensitive
    assert check_layer(L.lrn_forward, L.lrn_backward, {"x": x}, kwargs=kw)["x"] < TOL


@pytest.mark.parametrize("size", [2, 4])
def test_lrn_backward_gradcheck_even_size(xp, rng, size):
    x = randn(xp, rng, 1, 2, 2, 6) * 3
    kw = {"size": size, "alpha": 0.5, "beta": 0.75, "k": 1.0}
    assert check_layer(L.lrn_forward, L.lrn_backward, {"x": x}, kwargs=kw)["x"] < TOL


def test_lrn_is_caffe_pytorch_form(xp):
    """Pins the convention: alpha is divided by size (Caffe, PyTorch), unlike the AlexNet paper."""
    C, size, alpha, beta, k = 7, 5, 1e-1, 0.75, 2.0
    x = xp.asarray(np.arange(1, C + 1, dtype=np.float64).reshape(1, 1, 1, C))
    out, _ = L.lrn_forward(x, size, alpha, beta, k)
    v = np.arange(1, C + 1, dtype=np.float64)
    c = 3  # window c-2..c+2 = values 2..6
    expected = v[c] / (k + alpha / size * np.sum(v[c - 2 : c + 3] ** 2)) ** beta
    alexnet = v[c] / (k + alpha * np.sum(v[c - 2 : c + 3] ** 2)) ** beta
    assert math.isclose(float(out[0, 0, 0, c]), expected, rel_tol=1e-12)
    assert not math.isclose(float(out[0, 0, 0, c]), alexnet, rel_tol=1e-3)
    edge = v[0] / (k + alpha / size * np.sum(v[0:3] ** 2)) ** beta  # zero-padded at the edge
    assert math.isclose(float(out[0, 0, 0, 0]), edge, rel_tol=1e-12)


def test_lrn_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 9)) * 4
    out, _ = L.lrn_forward(x, 5, 1e-2, 0.75, 2.0)
    ref = torch.nn.functional.local_response_norm(torch.from_numpy(x).permute(0, 3, 1, 2), 5, 1e-2, 0.75, 2.0)
    assert rel_error(out, ref.permute(0, 2, 3, 1).numpy()) < 1e-10


# ----------------------------------------------------------------------------- loss


def test_softmax_cross_entropy_gradcheck(xp, rng):
    scores, y = randn(xp, rng, 6, 5), xp.asarray([0, 4, 2, 1, 1, 3])
    loss, dscores = L.softmax_cross_entropy(scores, y)
    from vggedu.gradcheck import numerical_gradient

    numeric = numerical_gradient(lambda: L.softmax_cross_entropy(scores, y)[0], scores)
    assert rel_error(dscores, numeric) < TOL


def test_softmax_cross_entropy_values(xp):
    loss, _ = L.softmax_cross_entropy(xp.zeros((4, 10)), xp.asarray([0, 1, 2, 3]))
    assert math.isclose(loss, math.log(10), rel_tol=1e-6)


def test_softmax_cross_entropy_stable_for_huge_logits(xp):
    scores = xp.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=np.float32)
    loss, d = L.softmax_cross_entropy(scores, xp.asarray([0, 0]))
    assert math.isfinite(loss) and bool(xp.isfinite(d).all())
    assert math.isclose(loss, 2e4 / 2, rel_tol=1e-4)  # first row ~0, second ~2e4


# ----------------------------------------------------------------------------- backward leaves dout alone


def test_every_backward_leaves_dout_unchanged(xp, rng):
    x4 = randn(xp, rng, 2, 4, 4, 3)
    cases = [
        (L.conv_backward, L.conv_forward(x4, randn(xp, rng, 3, 3, 3, 2), randn(xp, rng, 2), 1, 1)),
        (L.maxpool_backward, L.maxpool_forward(x4)),
        (L.relu_backward, L.relu_forward(x4)),
        (L.linear_backward, L.linear_forward(randn(xp, rng, 2, 3), randn(xp, rng, 3, 4), randn(xp, rng, 4))),
        (L.dropout_backward, L.dropout_forward(x4, 0.5, True, np.random.default_rng(0))),
        (L.lrn_backward, L.lrn_forward(x4)),
    ]
    for backward, (out, cache) in cases:
        dout = randn(xp, rng, *out.shape)
        before = dout.copy()
        backward(dout, cache)
        assert bool((dout == before).all()), backward.__name__


# ----------------------------------------------------------------------------- bad input


def test_conv_rejects_bad_input():
    x = np.zeros((1, 4, 4, 3), np.float32)
    w = np.zeros((3, 3, 3, 2), np.float32)
    b = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match=r"4-D NHWC.*\(4, 4, 3\)"):
        L.conv_forward(x[0], w, b)
    with pytest.raises(ValueError, match="channel mismatch.*C=3.*C=4"):
        L.conv_forward(x, np.zeros((3, 3, 4, 2), np.float32), b)
    with pytest.raises(ValueError, match="kernel 7x7 is larger than the padded input 6x6"):
        L.conv_forward(x, np.zeros((7, 7, 3, 2), np.float32), b, pad=1)
    with pytest.raises(TypeError, match="dtype int64"):
        L.conv_forward(x.astype(np.int64), w, b)
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        L.conv_forward(x, w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="stride"):
        L.conv_forward(x, w, b, stride=0)


def test_other_layers_reject_bad_input():
    with pytest.raises(TypeError, match="dtype uint8"):
        L.relu_forward(np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"x must be 2-D"):
        L.linear_forward(np.zeros((2, 3, 4)), np.zeros((12, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"x \(2, 3\) has D=3 but w \(4, 2\)"):
        L.linear_forward(np.zeros((2, 3)), np.zeros((4, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="pool window 2x2 is larger than the input 1x1"):
        L.maxpool_forward(np.zeros((1, 1, 1, 1)))
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        L.dropout_forward(np.zeros(3), 1.0, True, np.random.default_rng())


def test_loss_rejects_bad_labels_and_logits():
    scores = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"labels out of range: expected 0 <= y < 4, got min 0, max 4"):
        L.softmax_cross_entropy(scores, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="labels out of range.*min -1"):
        L.softmax_cross_entropy(scores, np.array([0, -1, 2]))
    with pytest.raises(TypeError, match="labels y must be integers"):
        L.softmax_cross_entropy(scores, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        L.softmax_cross_entropy(scores, np.array([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        L.softmax_cross_entropy(np.array([[np.nan, 0.0]]), np.array([0]))


def test_col2im_is_the_adjoint_of_im2col(xp, rng):
    """<im2col(x), y> == <x, col2im(y)>: what makes the fused backward's sum correct."""
    x = randn(xp, rng, 2, 7, 6, 3)
    for K, S in [(3, 1), (3, 2), (2, 2)]:
        OH, OW = (7 - K) // S + 1, (6 - K) // S + 1
        cols = L.im2col(x, K, K, S, OH, OW)
        y = randn(xp, rng, *cols.shape)
        assert abs(float((cols * y).sum()) - float((x * L.col2im(y, x.shape, S)).sum())) < 1e-9


def test_im2col_accepts_non_contiguous_input(xp, rng):
    x = randn(xp, rng, 2, 6, 6, 4)[:, :, :, ::2]  # strided channels
    cols = L.im2col(x, 3, 3, 1, 4, 4)
    assert float(cols[1, 2, 3, 1, 2, 1]) == float(x[1, 3, 5, 1])


@pytest.mark.parametrize("shape,size,stride", [((2, 4, 6, 3), 2, 2), ((1, 6, 6, 2), 3, 3), ((1, 5, 5, 2), 2, 2)])
def test_maxpool_matches_a_loop_ties_included(xp, shape, size, stride):
    """Output and gradient routing against explicit loops, on inputs full of ties."""
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.integers(0, 3, shape).astype(np.float64))  # many ties
    out, cache = L.maxpool_forward(x, size, stride)
    dout = xp.asarray(rng.standard_normal(out.shape))
    dx = L.maxpool_backward(dout, cache)
    # the oracle: explicit loops, gradient to the first maximum in row-major order
    xn, dn = np.asarray(x.tolist()), np.asarray(dout.tolist())
    ref_out, ref_dx = np.zeros(out.shape), np.zeros(shape)
    for n, i, j, c in np.ndindex(*out.shape):
        win = xn[n, i * stride : i * stride + size, j * stride : j * stride + size, c]
        a, b = np.unravel_index(np.argmax(win), win.shape)  # np.argmax returns the first maximum
        ref_out[n, i, j, c] = win[a, b]
        ref_dx[n, i * stride + a, j * stride + b, c] += dn[n, i, j, c]
    assert np.array_equal(np.asarray(out.tolist()), ref_out)
    assert np.allclose(np.asarray(dx.tolist()), ref_dx)


# ----------------------------------------------------------------------------- cs231n's published vectors
# Assignment 2 of Stanford's CS231n (ConvolutionalNetworks.ipynb) publishes these inputs and expected
# outputs, in NCHW with weights (F, C, KH, KW); converted to our layout at the boundary.


def test_conv_forward_matches_cs231n_vector():
    x = np.linspace(-0.1, 0.5, num=2 * 3 * 4 * 4).reshape(2, 3, 4, 4).transpose(0, 2, 3, 1)
    w = np.linspace(-0.2, 0.3, num=3 * 3 * 4 * 4).reshape(3, 3, 4, 4).transpose(2, 3, 1, 0)
    b = np.linspace(-0.1, 0.2, num=3)
    correct_out = np.array([[[[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
                             [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
                             [[0.50813986, 0.54309974], [0.64082444, 0.67101435]]],
                            [[[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
                             [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
                             [[2.36270298, 2.36904306], [2.38090835, 2.38247847]]]]).transpose(0, 2, 3, 1)
    for conv in (L.conv_forward, lambda *a: (L.conv_forward_naive(*a), None)):
        out, _ = conv(x, w, b, 2, 1)
        assert rel_error(out, correct_out) < 1e-7  # cs231n: "difference should be around 2e-8"


def test_maxpool_forward_matches_cs231n_vector():
    x = np.linspace(-0.3, 0.4, num=2 * 3 * 4 * 4).reshape(2, 3, 4, 4).transpose(0, 2, 3, 1)
    correct_out = np.array([[[[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
                             [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
                             [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]]],
                            [[[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
                             [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
                             [[0.32631579, 0.34105263], [0.38526316, 0.4]]]]).transpose(0, 2, 3, 1)
    out, _ = L.maxpool_forward(x, 2, 2)
    assert rel_error(out, correct_out) < 1e-7


# ----------------------------------------------------------------------------- caches


def test_caches_are_named_tuples(rng):
    x = rng.standard_normal((2, 4, 4, 3))
    _, cache = L.conv_forward(x, rng.standard_normal((3, 3, 3, 2)), np.zeros(2), 1, 1)
    assert isinstance(cache, L.ConvCache) and cache.cols.shape == (2 * 4 * 4, 3 * 3 * 3)
    assert cache.x_shape == (2, 4, 4, 3) and (cache.stride, cache.pad) == (1, 1)
    _, cache = L.maxpool_forward(x)
    assert isinstance(cache, L.PoolCache) and cache.argmax.shape == (2, 2, 2, 3) and cache.size == 2
    _, cache = L.linear_forward(x.reshape(2, -1), rng.standard_normal((48, 5)), np.zeros(5))
    assert isinstance(cache, L.LinearCache) and cache.w.shape == (48, 5)
    _, cache = L.lrn_forward(x)
    assert isinstance(cache, L.LRNCache) and cache.size == 5
