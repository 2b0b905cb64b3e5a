"""Top-k error, a run's metrics file and curves (lessons 05 and 06).

The paper reports top-1 and top-5 error (Sect. 4): the fraction of images whose true class is not
the highest score, or not among the five highest. A run directory holds ``metrics.jsonl``, one JSON
object per epoch (keys below), which ``read_metrics`` reads back and ``plot_curves`` draws:

    epoch, step, lr, train_loss, train_top1_err, val_loss, val_top1_err, val_top5_err,
    seconds, images_per_s, lr_dropped, best

``compare_curves`` draws several runs side by side (lesson 06: transplant vs random initialisations).
Evaluating a net or checkpoint (centre crop, dense, multi-crop, scales, fusion) is ``vggedu.evaluate``;
``evaluate_model`` and ``evaluate_checkpoint`` are still importable from here for old code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from vggedu.backend import to_numpy

DEFAULT_PIXEL_SCALE = 1 / 255  # TrainConfig.pixel_scale's default, for checkpoints that never trained


def topk_correct(scores, y, k: int = 1) -> int:
    """How many rows of ``scores`` (N, K) have label ``y[i]`` among their ``k`` highest scores (k <= K)."""
    scores, y = to_numpy(scores), to_numpy(y)
    if scores.ndim != 2 or y.shape != (scores.shape[0],):
        raise ValueError(f"topk_correct: need scores (N, K) and labels (N,), got {scores.shape} and {y.shape}")
    k = min(int(k), scores.shape[1])
    if k == 1:
        return int((scores.argmax(axis=1) == y).sum())
    # the true class is in the top k when fewer than k classes score strictly higher than it
    true = scores[np.arange(len(y)), y][:, None]
    return int(((scores > true).sum(axis=1) < k).sum())


def topk_error(scores, y, k: int = 1) -> float:
    """Top-k error in [0, 1]: 1 - (fraction of rows whose label is among the k highest scores)."""
    n = len(to_numpy(y))
    if n == 0:
        raise ValueError("topk_error: no images")
    return 1.0 - topk_correct(scores, y, k) / n


def read_metrics(path) -> list[dict]:
    """The per-epoch records of ``metrics.jsonl`` (a file, or a run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {n}: not JSON ({err})") from None
    return records


def _column(history, key):
    return [r.get(key, math.nan) for r in history]


def _draw(axes, history, label="", style="-"):
    """Loss, top-1/top-5 error (%) and learning rate of one run onto three axes."""
    epochs = _column(history, "epoch")
    ax_loss, ax_err, ax_lr = axes
    prefix = f"{label} " if label else ""
    ax_loss.plot(epochs, _column(history, "train_loss"), style, label=f"{prefix}train")
    ax_loss.plot(epochs, _column(history, "val_loss"), style, label=f"{prefix}val", alpha=0.7)
    ax_err.plot(epochs, [100 * e for e in _column(history, "train_top1_err")], style, label=f"{prefix}train top-1")
    ax_err.plot(epochs, [100 * e for e in _column(history, "val_top1_err")], style, label=f"{prefix}val top-1")
    ax_err.plot(epochs, [100 * e for e in _column(history, "val_top5_err")], style, label=f"{prefix}val top-5",
                alpha=0.6)
    ax_lr.plot(epochs, _column(history, "lr"), style, label=label or None)


def _finish(fig, axes, num_classes=None, title=None, path=None):
    """Titles, legends and grids of the three panels; the chance-level loss ln(K) when K is given; save."""
    ax_loss, ax_err, ax_lr = axes
    if num_classes:
        ax_loss.axhline(math.log(num_classes), color="grey", lw=0.8, ls=":", label="ln(classes): chance")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_err.set(title="error (%)", xlabel="epoch", ylim=(0, 100))
    ax_lr.set(title="learning rate", xlabel="epoch", yscale="log")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_curves(history, path=None, title: str | None = None, num_classes: int | None = None):
    """Draw one run's curves (a list of per-epoch records, or a run directory); save to ``path`` if given.

    Returns the matplotlib figure. ``num_classes`` adds the chance-level loss ln(K) as a dotted line.
    """
    if isinstance(history, (str, Path)):
        history = read_metrics(history)
    fig, axes = _figure((13, 3.6))
    _draw(axes, history)
    return _finish(fig, axes, num_classes, title, path)


def compare_curves(runs: dict, path=None, title: str | None = None, num_classes: int | None = None,
                   offsets: dict | None = None):
    """Several runs on the same three panels: ``runs`` maps a label to a history (or a run directory).

    ``offsets`` shifts a run's epochs (``{"VGG-D": 14}``: D continued after A's 14 epochs)."""
    fig, axes = _figure((14, 4))
    styles = ["-", "--", "-.", ":"]
    for i, (label, history) in enumerate(runs.items()):
        if isinstance(history, (str, Path)):
            history = read_metrics(history)
        epochs = [e + (offsets or {}).get(label, 0) for e in _column(history, "epoch")]
        colour = f"C{i}"
        axes[0].plot(epochs, _column(history, "train_loss"), styles[0], color=colour, label=f"{label} train")
        axes[0].plot(epochs, _column(history, "val_loss"), styles[1], color=colour, label=f"{label} val")
        axes[1].plot(epochs, [100 * e for e in _column(history, "val_top1_err")], styles[0], color=colour,
                     label=f"{label} val top-1")
        axes[2].plot(epochs, _column(history, "lr"), styles[0], color=colour, label=label)
    return _finish(fig, axes, num_classes, title, path)


def _figure(figsize):
    """A figure with three axes, made without pyplot: no GUI backend, nothing left open (notebooks still show it)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, 3)


def __getattr__(name):  # evaluation moved to vggedu.evaluate (which imports this module: no cycle at import)
    if name in ("evaluate_model", "evaluate_checkpoint"):
        from vggedu import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module 'vggedu.metrics' has no attribute {name!r}")
