"""The exercise checkers: they accept vggedu's reference layers and the solutions, and reject each usual
mistake with a message that names it; ``@exercise`` runs the reference solution in place of a stub."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from vggedu import exercises as E
from vggedu import layers as L

REPO = Path(__file__).resolve().parents[1]


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_momentum(w, dw, v, lr, momentum):
    next_v = momentum * v - lr * dw
    return w + next_v, next_v


def _all_checks(conv_f, conv_b, pool_f, pool_b, softmax, sgd):
    E.check_conv_forward(conv_f)
    E.check_conv_backward(conv_f, conv_b)
    E.check_maxpool_forward(pool_f)
    E.check_maxpool_backward(pool_f, pool_b)
    E.check_softmax_cross_entropy(softmax)
    E.check_sgd_momentum(sgd)


def test_checkers_accept_the_reference_layers(capsys):
    _all_checks(L.conv_forward, L.conv_backward, L.maxpool_forward, L.maxpool_backward, L.softmax_cross_entropy,
                reference_momentum)
    out = capsys.readouterr().out
    for name in ("conv_forward", "conv_backward", "maxpool_forward", "maxpool_backward", "softmax_cross_entropy",
                 "sgd_momentum"):
        assert f"check_{name}: ok" in out
    assert "numerical gradients" in out and "relative error" in out


def test_checkers_accept_the_solutions(capsys):
    s2, s5 = _load(REPO / "solutions" / "lesson02.py"), _load(REPO / "solutions" / "lesson05.py")
    _all_checks(s2.conv_forward, s2.conv_backward, s2.maxpool_forward, s2.maxpool_backward,
                s2.softmax_cross_entropy, s5.sgd_momentum)
    assert capsys.readouterr().out.count(": ok") == 6


def test_the_literals_are_the_reference_layers_outputs():
    """The expected arrays are literals in the module (no vggedu.layers at check time) and agree with it."""
    source = Path(E.__file__).read_text()
    assert not re.search(r"^\s*(from vggedu import layers|import vggedu.layers|from vggedu.layers)", source, re.M)
    made = _load(REPO / "tools" / "make_exercise_data.py").expected_arrays()
    assert set(made) == set(E.EXPECTED)
    for key, a in made.items():
        np.testing.assert_allclose(np.ravel(a), E.EXPECTED[key], rtol=1e-12, atol=1e-300, err_msg=key)


def test_fixed_inputs_have_ties_and_tie_free_gradcheck_inputs_do_not():
    x, size, stride = E.POOL_CASES["2x2 stride 2, with ties"]
    windows = x.reshape(1, 2, 2, 2, 2, 2).transpose(0, 1, 3, 5, 2, 4).reshape(-1, 4)
    assert sum(int((w == w.max()).sum() > 1) for w in windows) >= 3
    for shape, size, stride in E.POOL_GRADCHECK.values():
        x = E.wave(shape, 0.25)
        for n, c in np.ndindex(shape[0], shape[3]):
            for i in range(0, shape[1] - size + 1, stride):
                for j in range(0, shape[2] - size + 1, stride):
                    v = np.sort(x[n, i : i + size, j : j + size, c].ravel())
                    assert np.diff(v).min() > 1e-3  # far from a tie compared with the step h = 1e-5


# ----------------------------------------------------------------------------- the usual mistakes


def conv_forward_flipped(x, w, b, stride, pad):  # true convolution: the kernel rotated by 180 degrees
    return L.conv_forward(x, np.ascontiguousarray(w[::-1, ::-1]), b, stride, pad)


def conv_backward_flipped(dout, cache):
    dx, dw, db = L.conv_backward(dout, cache)
    return dx, dw[::-1, ::-1], db


def conv_forward_no_pad(x, w, b, stride, pad):
    return L.conv_forward(x, w, b, stride, 0)


def conv_backward_overwriting(dout, cache):
    """Right but for col2im, which writes ``=`` where it must add."""
    cols, w, (N, H, W, C), stride, pad = cache
    KH, KW, _, F = w.shape
    _, OH, OW, _ = dout.shape
    dout2 = dout.reshape(-1, F)
    dcols = (dout2 @ w.reshape(-1, F).T).reshape(N, OH, OW, KH, KW, C)
    dx_pad = np.zeros((N, H + 2 * pad, W + 2 * pad, C))
    for i in range(KH):
        for j in range(KW):
            dx_pad[:, i : i + stride * OH : stride, j : j + stride * OW : stride, :] = dcols[:, :, :, i, j, :]
    dw = (cols.T @ dout2).reshape(w.shape)
    return dx_pad[:, pad : pad + H, pad : pad + W, :], dw, dout2.sum(axis=0)


def conv_backward_uncropped(dout, cache):
    cols, w, (N, H, W, C), stride, pad = cache
    dx, dw, db = L.conv_backward(dout, cache)
    return np.pad(dx, ((0, 0), (pad, pad), (pad, pad), (0, 0))), dw, db


def conv_backward_bad_db(dout, cache):
    dx, dw, db = L.conv_backward(dout, cache)
    return dx, dw, dout.mean(axis=(0, 1, 2))


def test_conv_forward_flipped_kernel_is_named():
    with pytest.raises(AssertionError, match="flipped kernel") as e:
        E.check_conv_forward(conv_forward_flipped)
    assert "relative error" in str(e.value) and "out is wrong" in str(e.value)


def test_conv_forward_missing_bias_is_named():
    with pytest.raises(AssertionError, match="bias b is missing"):
        E.check_conv_forward(lambda x, w, b, stride, pad: L.conv_forward(x, w, 0 * b, stride, pad))


def test_conv_forward_shape_error_is_named():
    with pytest.raises(AssertionError, match=r"out has shape \(1, 2, 2, 2\), expected \(1, 4, 4, 2\)"):
        E.check_conv_forward(conv_forward_no_pad)


def test_conv_backward_with_a_flipped_forward_is_named():
    with pytest.raises(AssertionError, match="flipped kernel"):
        E.check_conv_backward(conv_forward_flipped, conv_backward_flipped)


def test_col2im_overwriting_overlaps_is_named():
    with pytest.raises(AssertionError, match="col2im overwrites overlaps instead of adding") as e:
        E.check_conv_backward(L.conv_forward, conv_backward_overwriting)
    assert "dx is wrong" in str(e.value) and "+=" in str(e.value)


def test_conv_backward_shape_and_db_errors_are_named():
    with pytest.raises(AssertionError, match=r"dx has shape \(1, 6, 6, 2\), expected \(1, 4, 4, 2\)"):
        E.check_conv_backward(L.conv_forward, conv_backward_uncropped)
    with pytest.raises(AssertionError, match="db is wrong.*\n.*db = dout summed over N, OH and OW"):
        E.check_conv_backward(L.conv_forward, conv_backward_bad_db)


def maxpool_forward_mask(x, size, stride):
    """Right forward; the cache keeps x and out, so the backward builds a mask x == max (every tie)."""
    out, _ = L.maxpool_forward(x, size, stride)
    return out, (x, out, size, stride)


def maxpool_backward_every_tie(dout, cache):
    x, out, size, stride = cache
    _, OH, OW, _ = out.shape
    dx = np.zeros_like(x)
    for i in range(OH):
        for j in range(OW):
            window = x[:, i * stride : i * stride + size, j * stride : j * stride + size, :]
            mask = window == out[:, i : i + 1, j : j + 1, :]
            dx[:, i * stride : i * stride + size, j * stride : j * stride + size, :] += mask * dout[:, i : i + 1,
                                                                                                   j : j + 1, :]
    return dx


def maxpool_backward_overwriting(dout, cache):
    argmax, x_shape, size, stride = cache
    _, OH, OW, _ = dout.shape
    dx = np.zeros(x_shape)
    for i in range(OH):
        for j in range(OW):
            k = argmax[:, i, j, :]
            for n, c in np.ndindex(k.shape):
                u, v = divmod(int(k[n, c]), size)
                dx[n, i * stride + u, j * stride + v, c] = dout[n, i, j, c]  # = where overlaps must add
    return dx


def test_maxpool_gradient_to_every_tied_maximum_is_named():
    with pytest.raises(AssertionError, match="gradient sent to every tied maximum") as e:
        E.check_maxpool_backward(maxpool_forward_mask, maxpool_backward_every_tie)
    assert "first maximal element of the window in row-major order" in str(e.value)


def test_maxpool_overlaps_overwritten_is_named():
    with pytest.raises(AssertionError, match="overlapping windows overwrite instead of adding"):
        E.check_maxpool_backward(L.maxpool_forward, maxpool_backward_overwriting)


def test_maxpool_forward_shape_and_values():
    with pytest.raises(AssertionError, match=r"out has shape \(1, 3, 3, 2\), expected \(1, 2, 2, 2\)"):
        E.check_maxpool_forward(lambda x, size, stride: L.maxpool_forward(x, size, 1))
    with pytest.raises(AssertionError, match="out is wrong"):
        E.check_maxpool_forward(lambda x, size, stride: (L.maxpool_forward(x, size, stride)[0] * 0.5, None))


def softmax_sum(scores, y):
    """Summed over the batch instead of averaged: both outputs N times too large."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y]).sum()
    p[np.arange(len(y)), y] -= 1
    return loss, p


def softmax_dscores_without_1_over_n(scores, y):
    loss, dscores = L.softmax_cross_entropy(scores, y)
    return loss, dscores * len(y)


def softmax_unstable(scores, y):
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(len(y)), y]).mean()
    p[np.arange(len(y)), y] -= 1
    return loss, p / len(y)


def test_softmax_missing_1_over_n_is_named():
    with pytest.raises(AssertionError, match="loss is wrong.*\n.*missing 1/N"):
        E.check_softmax_cross_entropy(softmax_sum)
    with pytest.raises(AssertionError, match="dscores is wrong.*\n.*missing 1/N"):
        E.check_softmax_cross_entropy(softmax_dscores_without_1_over_n)


def test_softmax_overflow_and_sign_are_named():
    with pytest.raises(AssertionError, match="logits near 1000.*\n.*exp overflows.*Subtract each row's maximum"):
        E.check_softmax_cross_entropy(softmax_unstable)
    with pytest.raises(AssertionError, match="sign flipped"):
        E.check_softmax_cross_entropy(lambda s, y: (L.softmax_cross_entropy(s, y)[0],
                                                    -L.softmax_cross_entropy(s, y)[1]))


def momentum_uphill(w, dw, v, lr, momentum):
    v = momentum * v + lr * dw
    return w + v, v


def momentum_other_convention(w, dw, v, lr, momentum):
    v = momentum * v + lr * dw
    return w - v, v


def momentum_minus_v(w, dw, v, lr, momentum):
    v = momentum * v - lr * dw
    return w - v, v


def momentum_pytorch(w, dw, v, lr, momentum):
    v = momentum * v + dw
    return w - lr * v, v


def momentum_old_velocity(w, dw, v, lr, momentum):
    return w + v, momentum * v - lr * dw


@pytest.mark.parametrize("fn,named", [
    (momentum_uphill, "momentum sign wrong"),
    (momentum_other_convention, "momentum sign wrong"),
    (momentum_minus_v, "momentum sign wrong"),
    (momentum_pytorch, "PyTorch's form"),
    (momentum_old_velocity, "OLD velocity"),
])
def test_momentum_mistakes_are_named(fn, named):
    with pytest.raises(AssertionError, match=named) as e:
        E.check_sgd_momentum(fn)
    assert "v <- mu*v - lr*dw" in str(e.value)


def test_momentum_returning_one_array_is_named():
    with pytest.raises(AssertionError, match=r"must return \(next_w, next_v\)"):
        E.check_sgd_momentum(lambda w, dw, v, lr, momentum: w - lr * dw)


def test_float32_outputs_are_named():
    with pytest.raises(AssertionError, match="out is float32, but the inputs are float64"):
        E.check_conv_forward(lambda x, w, b, stride, pad: L.conv_forward(x.astype(np.float32), w.astype(np.float32),
                                                                          b.astype(np.float32), stride, pad))


def test_backward_must_not_modify_dout():
    def conv_backward_in_place(dout, cache):
        grads = L.conv_backward(dout, cache)
        dout *= 0
        return grads
    with pytest.raises(AssertionError, match="modified dout in place"):
        E.check_conv_backward(L.conv_forward, conv_backward_in_place)


# ----------------------------------------------------------------------------- stubs and solutions


def test_exercise_runs_the_solution_in_place_of_a_stub(capsys):
    @E.exercise
    def sgd_momentum(w, dw, v, lr, momentum):
        raise NotImplementedError

    E.check_sgd_momentum(sgd_momentum)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("sgd_momentum: your version raises NotImplementedError, so the reference "
                                   "solution (solutions/lesson05.py) runs in its place")
    assert "check_sgd_momentum: ok" in out
    sgd_momentum(np.zeros(2), np.ones(2), np.zeros(2), 0.1, 0.9)
    assert "NotImplementedError" not in capsys.readouterr().out  # said once


def test_exercise_runs_the_students_own_code():
    @E.exercise
    def sgd_momentum(w, dw, v, lr, momentum):
        return momentum_uphill(w, dw, v, lr, momentum)

    with pytest.raises(AssertionError, match="momentum sign wrong"):
        E.check_sgd_momentum(sgd_momentum)
    assert sgd_momentum.__name__ == "sgd_momentum"


def test_exercise_needs_a_known_name():
    def conv_forwards():
        raise NotImplementedError

    with pytest.raises(KeyError, match="no reference solution named 'conv_forwards'; there are: col2im, conv_backward"):
        E.exercise(conv_forwards)


def test_solutions_found_from_the_notebooks_folder(monkeypatch):
    monkeypatch.chdir(REPO / "notebooks")
    assert E.solutions_dir() == REPO / "solutions"
    monkeypatch.setattr(E, "__file__", "/nonexistent/site-packages/vggedu/exercises.py")
    assert E.solutions_dir() == REPO / "solutions"  # found above the working directory


def test_missing_solutions_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(E, "__file__", str(tmp_path / "site-packages" / "vggedu" / "exercises.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VGGEDU_SOLUTIONS", raising=False)
    with pytest.raises(FileNotFoundError, match="not with a pip-installed vggedu.*VGGEDU_SOLUTIONS"):
        E.solutions_dir()
    monkeypatch.setenv("VGGEDU_SOLUTIONS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="has no lesson02.py"):
        E.solutions_dir()
    monkeypatch.setenv("VGGEDU_SOLUTIONS", str(REPO / "solutions"))
    assert E.solutions_dir() == REPO / "solutions"


def test_show_solution_prints_the_source(capsys):
    E.show_solution("sgd_momentum")
    out = capsys.readouterr().out
    assert out.startswith("# solutions/lesson05.py\ndef sgd_momentum(") and "momentum * v - lr * dw" in out
