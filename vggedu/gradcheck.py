"""Numerical gradients for checking every backward; used by ``tests/`` and lesson 02.

The check: perturb one input entry by +h and -h, run the forward, and compare
``(f(x + h) - f(x - h)) / 2h`` with the analytic gradient. Centred differences have error
O(h^2); in float64 with h = 1e-5 a correct backward agrees to a relative error around 1e-8
(we require <= 1e-6), while a wrong one is off by 1e-2 or more.

To check a layer with a vector output we use the scalar ``L = sum(out * dout)`` for a fixed
random ``dout``; then dL/dx is exactly what ``backward(dout)`` must return.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vggedu.backend import get_array_module, to_numpy


def rel_error(a, b, eps: float = 1e-12) -> float:
    """max |a - b| / max(|a| + |b|, eps), elementwise, as one float (0 when both are zero)."""
    a = to_numpy(a).astype(np.float64)
    b = to_numpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), eps)))


def numerical_gradient(f: Callable[[], float], x, h: float = 1e-5):
    """dF/dx of a scalar function ``f()`` that reads ``x``, by centred differences (x perturbed in place)."""
    xp = get_array_module(x)
    grad = xp.zeros_like(x)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)  # views: writing them writes x and grad
    for i in range(flat_x.size):
        old = flat_x[i].item()
        flat_x[i] = old + h
        f_plus = f()
        flat_x[i] = old - h
        f_minus = f()
        flat_x[i] = old
        flat_g[i] = (f_plus - f_minus) / (2 * h)
    return grad


def numerical_gradient_array(f: Callable[[], object], x, dout, h: float = 1e-5):
    """Gradient of ``sum(f() * dout)`` with respect to ``x``: the numerical counterpart of a backward."""
    xp = get_array_module(x)
    return numerical_gradient(lambda: float(xp.sum(f() * dout)), x, h)


def check_layer(forward: Callable, backward: Callable, inputs: dict, *, kwargs=None, grad_names=None,
                seed: int = 0, h: float = 1e-5):
    """Check any forward/backward pair numerically; returns ``{input name: relative error}``.

    ``forward(**inputs, **kwargs) -> (out, cache)`` and ``backward(dout, cache)`` returning one
    gradient or a tuple of them, in the order of ``grad_names`` (default: the keys of ``inputs``).
    Inputs must be float64 for the errors to mean anything. Also verifies that backward leaves
    ``dout`` unchanged (raises AssertionError otherwise).
    """
    kwargs = kwargs or {}
    grad_names = list(grad_names or inputs)
    for name, a in inputs.items():
        if getattr(a, "dtype", None) != np.float64:
            dtype = getattr(a, "dtype", type(a))
            raise TypeError(f"check_layer needs float64 inputs for meaningful errors; {name} is {dtype}")
    xp = get_array_module(*inputs.values())
    out, cache = forward(**inputs, **kwargs)
    rng = np.random.default_rng(seed)
    dout = xp.asarray(rng.standard_normal(out.shape))
    dout_before = dout.copy()
    grads = backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    if not bool(xp.all(dout == dout_before)):
        raise AssertionError(f"{getattr(backward, '__name__', 'backward')} modified dout in place")
    errors = {}
    for name, analytic in zip(grad_names, grads):
        x = inputs[name]
        numeric = numerical_gradient_array(lambda: forward(**inputs, **kwargs)[0], x, dout, h)
        errors[name] = rel_error(analytic, numeric)
    return errors
