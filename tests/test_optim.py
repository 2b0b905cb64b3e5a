"""SGD with momentum and weight decay, and the learning-rate schedules."""

from __future__ import annotations

import numpy as np
import pytest

from vggedu.optim import SGD, ReduceLROnPlateau, StepLR


def test_sgd_matches_the_update_rule_by_hand(xp):
    w = xp.asarray([1.0, -2.0])
    b = xp.asarray([0.5])
    opt = SGD({"fc.W": w, "fc.b": b}, lr=0.1, momentum=0.9, weight_decay=0.01)
    g_w, g_b = xp.asarray([0.2, 0.4]), xp.asarray([1.0])
    v_w, v_b = np.zeros(2), np.zeros(1)
    w_ref, b_ref = np.array([1.0, -2.0]), np.array([0.5])
    for _ in range(3):
        opt.step({"fc.W": g_w, "fc.b": g_b})
        v_w = 0.9 * v_w - 0.1 * (np.array([0.2, 0.4]) + 0.01 * w_ref)
        w_ref = w_ref + v_w
        v_b = 0.9 * v_b - 0.1 * np.array([1.0])  # biases are not decayed
        b_ref = b_ref + v_b
    assert np.allclose(w.tolist(), w_ref) and np.allclose(b.tolist(), b_ref)


def test_sgd_defaults_are_the_papers():
    opt = SGD({"w.W": np.zeros(1)})
    assert (opt.lr, opt.momentum, opt.weight_decay) == (1e-2, 0.9, 5e-4)


def test_sgd_minimises_a_quadratic():
    w = np.array([5.0, -3.0])
    opt = SGD({"q.W": w}, lr=0.05, momentum=0.9, weight_decay=0.0)
    for _ in range(300):
        opt.step({"q.W": 2 * w})
    assert np.abs(w).max() < 1e-3


def test_sgd_state_round_trip_resumes_exactly():
    def run(steps, state=None):
        w = np.array([1.0, 2.0])
        opt = SGD({"a.W": w}, lr=0.1)
        if state:
            w[...] = state[0]
            opt.load_state_dict(state[1])
        for _ in range(steps):
            opt.step({"a.W": w * 0.3 + 1})
        return w, opt

    full, _ = run(6)
    half, opt = run(3)
    rest, _ = run(3, (half.copy(), opt.state_dict()))
    assert np.array_equal(full, rest)


def test_sgd_rejects_bad_arguments():
    with pytest.raises(ValueError, match="learning rate"):
        SGD({}, lr=0)
    opt = SGD({"a.W": np.zeros(2)})
    with pytest.raises(ValueError, match=r"a.W: gradient shape \(3,\)"):
        opt.step({"a.W": np.zeros(3)})
    with pytest.raises(KeyError, match="unknown"):
        opt.step({"b.W": np.zeros(2)})


def test_plateau_divides_by_ten_after_patience():
    opt = SGD({"a.W": np.zeros(1)}, lr=1e-2)
    sched = ReduceLROnPlateau(opt, patience=1)
    history = [sched.step(acc) for acc in [0.5, 0.6, 0.6, 0.6, 0.7, 0.65, 0.66]]
    assert history == [False, False, False, True, False, False, True]
    assert opt.lr == pytest.approx(1e-4)


def test_plateau_max_drops_and_state():
    opt = SGD({"a.W": np.zeros(1)}, lr=1.0)
    sched = ReduceLROnPlateau(opt, patience=0, max_drops=2)
    for _ in range(6):
        sched.step(0.1)
    assert opt.lr == pytest.approx(0.01) and sched.drops == 2
    other = ReduceLROnPlateau(opt)
    other.load_state_dict(sched.state_dict())
    assert other.state_dict() == sched.state_dict()


def test_step_lr():
    opt = SGD({"a.W": np.zeros(1)}, lr=1.0)
    sched = StepLR(opt, step_size=2)
    for _ in range(5):
        sched.step()
    assert opt.lr == pytest.approx(0.01)


def test_chunked_cpu_update_equals_the_rule_on_large_arrays():
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((300, 701)).astype(np.float32)  # > one 65536-element chunk, not a multiple
    g = rng.standard_normal(w0.shape).astype(np.float32)
    w = w0.copy()
    opt = SGD({"fc6.W": w}, lr=0.1, momentum=0.9, weight_decay=0.01)
    opt.step({"fc6.W": g})
    opt.step({"fc6.W": g})
    v = -0.1 * (g + 0.01 * w0.astype(np.float64))
    w1 = w0 + v
    v = 0.9 * v - 0.1 * (g + 0.01 * w1)
    assert np.allclose(w, w1 + v, rtol=1e-5, atol=1e-6)
