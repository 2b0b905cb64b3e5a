"""DataLoader: shuffled mini-batches in the library layout, augmented in a background thread, resumable.

    loader = DataLoader(dataset, batch_size=64, seed=0, transform=train_transform(32, S=(32, 48), stats=st))
    for epoch in range(epochs):
        for x, y in loader:          # x (N, H, W, C) float32, y (N,) int64, numpy arrays
            ...
        state = loader.state_dict()  # {"epoch": ..., "position": ..., "seed": ...}: JSON-able

Determinism: epoch e visits the images in ``default_rng([seed, e]).permutation(N)`` order (or in
order with ``shuffle=False``), and image i in epoch e is augmented with its own generator
``default_rng([seed, e, i])``. So a batch depends only on (seed, epoch, which images) — not on
prefetching, threads, or when the loader was stopped — and a loader restored with
``load_state_dict`` yields exactly the batches an uninterrupted one would have.

One ``for`` loop runs what is left of the current epoch; ``state_dict()`` taken inside the loop
counts the batches already handed out. Prefetching: a background thread prepares up to
``prefetch`` batches ahead, so augmentation overlaps the training step (PIL's resizing and NumPy's
large array operations release the GIL); ``workers`` > 1 also spreads each batch's images over that
many threads. Taught in ``notebooks/04_data_and_augmentation.ipynb``.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class DataLoader:
    """Batches of (x float32 NHWC, y int64) from a dataset (anything with len() and [i] -> (image, label))."""

    def __init__(self, dataset, batch_size: int, shuffle: bool = True, seed: int = 0, transform=None,
                 drop_last: bool = False, prefetch: int = 2, workers: int = 1):
        if int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if int(prefetch) < 0 or int(workers) < 1:
            raise ValueError(f"DataLoader: need prefetch >= 0 and workers >= 1, got {prefetch}, {workers}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.seed, self.transform = bool(shuffle), int(seed), transform
        self.drop_last, self.prefetch, self.workers = bool(drop_last), int(prefetch), int(workers)
        self.epoch = 0  # current epoch
        self.position = 0  # images of the current epoch already handed out

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _epoch_end(self) -> int:
        return len(self) * self.batch_size if self.drop_last else len(self.dataset)

    def order(self, epoch: int) -> np.ndarray:
        """The order in which epoch ``epoch`` visits the dataset."""
        n = len(self.dataset)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def sample_rng(self, epoch: int, index: int) -> np.random.Generator:
        """The generator that augments image ``index`` in epoch ``epoch``."""
        return np.random.default_rng([self.seed, epoch, int(index)])

    def _sample(self, epoch, i):
        img, label = self.dataset[int(i)]
        if self.transform is not None:
            img = self.transform(img, self.sample_rng(epoch, i))
        return img, label

    def make_batch(self, epoch: int, index: np.ndarray, pool=None):
        """The batch of images ``index`` as it appears in epoch ``epoch``: (x, y)."""
        images, labels = getattr(self.dataset, "images", None), getattr(self.dataset, "labels", None)
        if self.transform is None and isinstance(images, np.ndarray) and isinstance(labels, np.ndarray):
            return images[index].astype(np.float32), labels[index].astype(np.int64)
        mapper = pool.map if pool is not None else map
        pairs = list(mapper(lambda i: self._sample(epoch, i), index))
        shapes = {np.shape(img) for img, _ in pairs}
        if len(shapes) > 1:
            raise ValueError(f"DataLoader: images in one batch have different shapes {sorted(shapes)[:4]}; "
                             "add a transform that crops or resizes them to one size")
        x = np.stack([img for img, _ in pairs]).astype(np.float32, copy=False)
        return x, np.asarray([label for _, label in pairs], np.int64)

    def __iter__(self):
        if self.position >= self._epoch_end():  # the previous loop stopped right after its last batch
            self.epoch, self.position = self.epoch + 1, 0
        epoch, order = self.epoch, self.order(self.epoch)
        starts = range(self.position, self._epoch_end(), self.batch_size)
        pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

        def produce():
            for s in starts:
                yield s, self.make_batch(epoch, order[s:s + self.batch_size], pool)

        batches = _background(produce(), self.prefetch) if self.prefetch else produce()
        try:
            for s, batch in batches:
                self.position = min(s + self.batch_size, self._epoch_end())
                yield batch
            self.epoch, self.position = epoch + 1, 0
        finally:
            batches.close()
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def state_dict(self) -> dict:
        """Where the loader is: {"epoch", "position" (images handed out this epoch), "seed"} (JSON-able)."""
        return {"epoch": int(self.epoch), "position": int(self.position), "seed": int(self.seed)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``: the next batches are those the saved loader would have given."""
        missing = {"epoch", "position", "seed"} - set(state)
        if missing:
            raise ValueError(f"DataLoader.load_state_dict: state lacks {sorted(missing)}; got keys {sorted(state)}")
        epoch, position, seed = int(state["epoch"]), int(state["position"]), int(state["seed"])
        if epoch < 0 or not 0 <= position <= len(self.dataset):
            raise ValueError(f"DataLoader.load_state_dict: bad epoch/position {epoch}/{position} "
                             f"for a dataset of {len(self.dataset)}")
        self.epoch, self.position, self.seed = epoch, position, seed

    def __repr__(self):
        return (f"DataLoader(n={len(self.dataset)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"seed={self.seed}, transform={self.transform!r}, epoch={self.epoch}, position={self.position})")


def _background(items, depth: int):
    """Run the generator ``items`` in a thread, ``depth`` items ahead; errors re-raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry):
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as err:  # handed to the consumer, which re-raises it
            put(("error", err))

    thread = threading.Thread(target=work, name="vggedu-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=10)
