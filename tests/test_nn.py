"""Module wrappers: parameter naming, gradients through a Sequential, train/eval, bad use."""

from __future__ import annotations

import numpy as np
import pytest

from vggedu import nn
from vggedu.gradcheck import numerical_gradient, rel_error
from vggedu.layers import softmax_cross_entropy


def small_net(dtype=np.float64):
    net = nn.Sequential(
        nn.Conv2d(3, 4, name="conv1_1", dtype=dtype),
        nn.LocalResponseNorm(name="norm1"),
        nn.ReLU(name="relu1_1"),
        nn.MaxPool2d(name="pool1"),
        nn.Conv2d(4, 3, kernel_size=1, name="conv2_1", dtype=dtype),
        nn.ReLU(name="relu2_1"),
        nn.Flatten(name="flatten"),
        nn.Linear(3 * 2 * 2, 5, name="fc6", dtype=dtype),
        nn.Dropout(0.5, rng=np.random.default_rng(0), name="drop6"),
        nn.Linear(5, 3, name="fc8", dtype=dtype),
    )
    rng = np.random.default_rng(0)
    for value in net.params.values():
        value[...] = rng.standard_normal(value.shape) * 0.5
    return net


def test_params_are_named_after_layers_and_shared():
    net = small_net()
    assert list(net.params) == ["conv1_1.W", "conv1_1.b", "conv2_1.W", "conv2_1.b", "fc6.W", "fc6.b", "fc8.W", "fc8.b"]
    assert net.params["conv1_1.W"].shape == (3, 3, 3, 4)
    assert net.params["fc6.W"].shape == (12, 5)
    net.params["fc8.b"] += 1.0  # in place: reaches the layer
    assert net["fc8"].params["b"] is net.params["fc8.b"]


def test_sequential_gradients_match_numerical(rng):
    net = small_net().train()
    net["drop6"].eval()  # dropout off: the loss is a deterministic function of the parameters
    x = rng.standard_normal((2, 4, 4, 3))
    y = np.array([0, 2])

    def loss():
        return softmax_cross_entropy(net.forward(x), y)[0]

    _, dscores = softmax_cross_entropy(net.forward(x), y)
    net.backward(dscores)
    grads = net.grads
    for name in ["conv1_1.W", "conv2_1.b", "fc6.W", "fc8.b"]:
        numeric = numerical_gradient(loss, net.params[name])
        assert rel_error(grads[name], numeric) < 1e-6, name


def test_gradients_are_overwritten_by_the_next_backward_and_a_copy_stays(rng):
    """PyTorch's convention: the next backward writes into the same arrays; a ``.copy()`` keeps a step's."""
    net = small_net().train()
    net["drop6"].eval()
    x, y = rng.standard_normal((2, 4, 4, 3)), np.array([0, 2])
    net.backward(softmax_cross_entropy(net.forward(x), y)[1])
    first = net.grads
    kept = {k: v.copy() for k, v in first.items()}
    net.backward(softmax_cross_entropy(net.forward(-x), y)[1])
    second = net.grads
    assert all(second[k] is first[k] for k in first)  # the same arrays, reused: no fresh allocation
    assert not all(np.array_equal(second[k], kept[k]) for k in first)  # ... and overwritten
    net.backward(softmax_cross_entropy(net.forward(x), y)[1])
    assert all(np.array_equal(net.grads[k], kept[k]) for k in kept)  # the copy held the first step's values
    assert all(net.grads[k] is first[k] for k in first)
    net.to("cpu")  # a move forgets the buffers: fresh ones next time
    assert net.grads == {}


def test_vgg_loss_gradients_are_reused_between_steps():
    from vggedu import build_vgg

    model = build_vgg("tiny", input_size=32, num_classes=4, init="he", seed=0, dropout=0.0)
    x = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32)
    _, g1 = model.loss(x, np.array([0, 1]))
    kept = {k: v.copy() for k, v in g1.items()}
    _, g2 = model.loss(-x, np.array([2, 3]))
    assert all(g2[k] is g1[k] for k in g1)
    assert any(not np.array_equal(g2[k], kept[k]) for k in kept)
    assert "copy" in type(model).loss.__doc__ and "overwrite" in type(model).loss.__doc__
    assert "copy" in nn.__doc__ and "overwritten" in nn.__doc__


def test_modules_are_callable(rng):
    x = rng.standard_normal((2, 4, 4, 3))
    assert np.array_equal(nn.ReLU()(x), np.maximum(x, 0))
    seq = nn.Sequential(nn.ReLU(name="relu"), nn.MaxPool2d(name="pool"), nn.Flatten(name="flat"))
    out = seq(x)
    assert out.shape == (2, 2 * 2 * 3)
    assert np.array_equal(out, seq.forward(x))
    net = small_net().eval()
    assert np.array_equal(net(x), net.forward(x))
    conv = nn.Conv2d(3, 2, name="conv")
    assert conv(x).shape == (2, 4, 4, 2)


def test_relu_inplace_only_when_asked(rng):
    x, dout = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((2, 3, 3, 4))
    x_kept, dout_kept = x.copy(), dout.copy()
    plain, inplace = nn.ReLU(), nn.ReLU(inplace=True)
    out = plain.forward(x)
    dx = plain.backward(dout)
    assert np.array_equal(x, x_kept) and np.array_equal(dout, dout_kept) and out is not x and dx is not dout
    out2 = inplace.forward(x)
    dx2 = inplace.backward(dout)
    assert out2 is x and dx2 is dout
    assert np.array_equal(out2, out) and np.array_equal(dx2, dx)


def test_train_eval_switch_dropout():
    net = small_net()
    x = np.ones((2, 4, 4, 3))
    net.eval()
    assert not net["drop6"].training
    a, b = net.forward(x), net.forward(x)
    assert np.array_equal(a, b)  # no dropout at test time
    net.train()
    assert net["drop6"].training and net["conv1_1"].training


def test_load_params_checks_shapes_first():
    net = small_net()
    before = {k: v.copy() for k, v in net.params.items()}
    bad = {k: np.zeros_like(v) for k, v in net.params.items()}
    bad["fc8.W"] = np.zeros((9, 9))
    with pytest.raises(ValueError, match=r"fc8.W: shape \(9, 9\) does not fit \(5, 3\)"):
        net.load_params(bad)
    assert all(np.array_equal(before[k], v) for k, v in net.params.items())  # nothing half-copied
    with pytest.raises(ValueError, match="missing"):
        net.load_params({"fc8.W": np.zeros((5, 3))})


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match="conv1_1: backward called before forward"):
        nn.Conv2d(3, 2, name="conv1_1").backward(np.zeros((1, 2, 2, 2), np.float32))


def test_duplicate_layer_names_rejected():
    with pytest.raises(ValueError, match="repeated"):
        nn.Sequential(nn.ReLU(name="a"), nn.ReLU(name="a"))


def test_module_to_cpu_keeps_values():
    net = small_net()
    w = net.params["fc6.W"].copy()
    net.to("cpu")
    assert np.array_equal(net.params["fc6.W"], w)
