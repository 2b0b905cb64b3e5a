"""``shapes``: the embedded dataset, ten classes of simple objects drawn by NumPy (no files, no download).

Each image holds one object — disc, ring, square, frame, triangle, star, cross, bar, crescent or
heart — in a random colour, rotation and position, with a size that varies by a factor of 3.4
(radius 0.125 to 0.42 of the image side, log-uniform: scale jittering matters, Sect. 3.1 of the
paper), on a background of coloured blotches, stripes and pixel noise, lit by a random gradient.
The object's tight bounding box comes with it (``boxes``: x0, y0, x1, y1 in pixels, x1 and y1
exclusive, so the object covers columns x0 .. x1-1).

Everything is drawn from a seed. Images are made in blocks of 250 (25 per class, so any multiple
of 250 is exactly balanced); every block draws the same number of scene parameters whatever ``n``
is, so a smaller dataset is a prefix of a larger one, and the scenes (classes, positions, sizes,
colours) are the same at every resolution — only the pixel noise differs. The three splits use
disjoint seed streams. Rendering is vectorised over images (5000 images at 32x32 take ~0.3 s).

Hard for a linear classifier on pixels (colours, positions and sizes all vary; see
tests/test_data_shapes.py), easy for a small convnet. Taught in
``notebooks/04_data_and_augmentation.ipynb``.
"""

from __future__ import annotations

import numpy as np

CLASSES = ("disc", "ring", "square", "frame", "triangle", "star", "cross", "bar", "crescent", "heart")
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_N = {"train": 5000, "val": 1000, "test": 1000}
BLOCK = 250  # images per seed block; a multiple of len(CLASSES)
R_MIN, R_MAX = 0.125, 0.42  # object radius as a fraction of the image side (ratio 3.36)
MARGIN = 1.08  # every shape fits in a circle of radius MARGIN * r around its centre
MIN_SIZE = 16
_GRID = 4  # coarse background noise grid (GRID x GRID blotches per image)
_PIXELS_PER_CHUNK = 1 << 21  # rendering works on chunks of at most this many pixels


def generate(n: int, size: int = 32, seed: int = 0, split: str = "train"):
    """Draw ``n`` images: returns (images uint8 (n, size, size, 3), labels int64 (n,), boxes int64 (n, 4))."""
    if split not in SPLITS:
        raise ValueError(f"shapes: unknown split {split!r}; use one of {sorted(SPLITS)}")
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"shapes: n must be a non-negative integer, got {n!r}")
    if not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(f"shapes: size must be an integer >= {MIN_SIZE}, got {size!r}")
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty(n, np.int64)
    boxes = np.empty((n, 4), np.int64)
    chunk = max(1, _PIXELS_PER_CHUNK // (size * size))
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        rng = np.random.default_rng([seed, SPLITS[split], start // BLOCK])
        scene = _draw_scene(rng, start // BLOCK)
        for lo in range(0, m, chunk):  # noise is drawn last and in order, so chunking changes nothing
            hi = min(m, lo + chunk)
            part = {k: v[lo:hi] for k, v in scene.items()}
            noise = rng.standard_normal((hi - lo, size, size, 3), dtype=np.float32)
            img, box = _render(part, noise, size)
            images[start + lo:start + hi] = img
            boxes[start + lo:start + hi] = box
        labels[start:start + m] = scene["label"][:m]
    return images, labels, boxes


def _draw_scene(rng: np.random.Generator, block: int) -> dict:
    """Scene parameters for one block of BLOCK images (always BLOCK of each, whatever n is)."""
    B, K = BLOCK, len(CLASSES)
    label = rng.permutation(np.arange(B) % K)
    r = np.exp(rng.uniform(np.log(R_MIN), np.log(R_MAX), B))
    margin = MARGIN * r
    cx = margin + rng.random(B) * (1 - 2 * margin)
    cy = margin + rng.random(B) * (1 - 2 * margin)
    theta = rng.uniform(0, 2 * np.pi, B)
    bg = rng.random((B, 3))
    # object colour: the first of 8 candidates at least 0.45 away from the background colour
    cand = rng.random((B, 8, 3))
    far = np.linalg.norm(cand - bg[:, None], axis=2) > 0.45
    pick = np.where(far.any(1), far.argmax(1), np.linalg.norm(cand - bg[:, None], axis=2).argmax(1))
    fg = cand[np.arange(B), pick]
    return dict(
        label=label, r=r, cx=cx, cy=cy, theta=theta, bg=bg, fg=fg,
        blotch=rng.uniform(-1, 1, (B, _GRID, _GRID, 3)) * rng.uniform(0.1, 0.35, (B, 1, 1, 1)),
        stripe_amp=rng.uniform(0.05, 0.2, B) * (rng.random(B) < 0.5),
        stripe_freq=rng.uniform(2, 7, B), stripe_dir=rng.uniform(0, np.pi, B),
        stripe_phase=rng.uniform(0, 2 * np.pi, B), stripe_col=rng.uniform(-1, 1, (B, 3)),
        light=rng.uniform(0, 0.35, B), light_dir=rng.uniform(0, 2 * np.pi, B),
        sigma=rng.uniform(0.02, 0.08, B),
    )


def _upsample_matrix(g: int, size: int) -> np.ndarray:
    """(size, g) bilinear interpolation weights from a g-point grid spanning the image."""
    pos = (np.arange(size) + 0.5) / size * (g - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, g - 2)
    frac = pos - lo
    A = np.zeros((size, g), np.float32)
    A[np.arange(size), lo] = 1 - frac
    A[np.arange(size), lo + 1] = frac
    return A


def _render(p: dict, noise: np.ndarray, size: int):
    """Pixels and boxes for the images described by ``p`` (arrays of equal length n)."""
    n = len(p["label"])
    f32 = np.float32
    coord = ((np.arange(size, dtype=f32) + 0.5) / size)
    x, y = coord[None, None, :], coord[None, :, None]  # (1, 1, W), (1, H, 1)

    # background: base colour + bilinear blotches + optional stripes
    A = _upsample_matrix(_GRID, size)
    img = np.einsum("hg,ngkc,wk->nhwc", A, p["blotch"].astype(f32), A, optimize=True)
    img += p["bg"].astype(f32)[:, None, None, :]
    d = p["stripe_dir"].astype(f32)[:, None, None]
    wave = np.sin(2 * np.pi * p["stripe_freq"].astype(f32)[:, None, None] * (x * np.cos(d) + y * np.sin(d))
                  + p["stripe_phase"].astype(f32)[:, None, None])  # (n, H, W)
    img += (p["stripe_amp"] * p["stripe_col"].T).T.astype(f32)[:, None, None, :] * wave[..., None]

    # object coordinates: rotate and scale so the shape lives in the unit circle
    r = p["r"].astype(f32)[:, None, None]
    dx, dy = x - p["cx"].astype(f32)[:, None, None], y - p["cy"].astype(f32)[:, None, None]
    c, s = np.cos(p["theta"]).astype(f32)[:, None, None], np.sin(p["theta"]).astype(f32)[:, None, None]
    u, v = (dx * c + dy * s) / r, (-dx * s + dy * c) / r  # (n, H, W)
    mask = np.zeros((n, size, size), bool)
    for k, name in enumerate(CLASSES):
        idx = np.flatnonzero(p["label"] == k)
        if idx.size:
            mask[idx] = _INSIDE[name](u[idx], v[idx])

    a = p["light_dir"].astype(f32)[:, None, None]
    shade = 1 + p["light"].astype(f32)[:, None, None] * 0.5 * (u * np.cos(a) + v * np.sin(a))
    obj = p["fg"].astype(f32)[:, None, None, :] * shade[..., None]
    img = np.where(mask[..., None], obj, img)
    img += p["sigma"].astype(f32)[:, None, None, None] * noise
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return out, _boxes(mask)


def _boxes(mask: np.ndarray) -> np.ndarray:
    """Tight (x0, y0, x1, y1) of each mask, x1/y1 exclusive."""
    rows, cols = mask.any(2), mask.any(1)  # (n, H), (n, W)
    if not rows.any(1).all():
        raise RuntimeError("shapes: an object vanished while drawing (this is a bug)")
    H, W = mask.shape[1:]
    return np.stack([cols.argmax(1), rows.argmax(1), W - cols[:, ::-1].argmax(1), H - rows[:, ::-1].argmax(1)], 1)


# --- the ten shapes, as inside-tests on coordinates (u, v) scaled so each fits the unit circle ----

def _disc(u, v):
    return u * u + v * v <= 1


def _ring(u, v):
    q = u * u + v * v
    return (q <= 1) & (q >= 0.55**2)


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.75


def _frame(u, v):
    q = np.maximum(np.abs(u), np.abs(v))
    return (q <= 0.75) & (q >= 0.4)


def _triangle(u, v):  # equilateral, circumradius 1 (inradius 0.5)
    out = np.ones(u.shape, bool)
    for a in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6):
        out &= u * np.cos(a) + v * np.sin(a) <= 0.5
    return out


def _star(u, v, points=5, inner=0.45):
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    sector = 2 * np.pi / points
    a = np.abs(np.mod(phi, sector) - sector / 2)  # 0 at an inner vertex ... sector/2 at a tip
    a = sector / 2 - a  # angle from the nearest tip
    # edge from the tip (1, 0) to the inner vertex at angle sector/2, radius `inner`
    px, py = rho * np.cos(a), rho * np.sin(a)
    ix, iy = inner * np.cos(sector / 2), inner * np.sin(sector / 2)
    return (ix - 1) * py - iy * (px - 1) >= 0


def _cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 0.9)) | ((av <= 0.3) & (au <= 0.9))


def _bar(u, v):
    return (np.abs(u) <= 0.95) & (np.abs(v) <= 0.27)


def _crescent(u, v):
    return (u * u + v * v <= 1) & ((u - 0.45) ** 2 + v * v >= 0.75**2)


def _heart(u, v):
    x, y = 1.2 * u, 0.15 - 1.2 * v
    q = x * x + y * y - 1
    return q * q * q - x * x * y * y * y <= 0


_INSIDE = {"disc": _disc, "ring": _ring, "square": _square, "frame": _frame, "triangle": _triangle,
           "star": _star, "cross": _cross, "bar": _bar, "crescent": _crescent, "heart": _heart}
