"""Reference solution to lesson 05's exercise (``vggedu.exercises`` loads it when the notebook's stub is unchanged)."""


def sgd_momentum(w, dw, v, lr, momentum):
    """One step of SGD with momentum in the paper's (Caffe's) form: v <- mu*v - lr*dw, then w <- w + v.

    Returns new arrays (next_w, next_v); w and v are left as they were."""
    next_v = momentum * v - lr * dw
    return w + next_v, next_v
