"""The trainer behind ``vggedu train``: the paper's recipe (Sect. 3.1) as a config, and a resumable training loop.

Taught in ``notebooks/05_training_vgg_a.ipynb`` (and used in ``06_transplanting_into_deeper_nets.ipynb``).

    cfg = TrainConfig(config="A", data="shapes", size=32, width=0.25, init="he", epochs=5, out="runs/A")
    result = Trainer(cfg).fit()          # progress bar, validation every epoch, checkpoints, curves

A run directory (``cfg.out``) holds ``metrics.jsonl`` (one line per epoch, see ``vggedu.metrics``),
``curves.png`` (loss, top-1/top-5 error, learning rate), ``last.npz`` (after every epoch, and on
Ctrl-C) and ``best.npz`` (the epoch with the lowest validation top-1 error). Checkpoints are
``vggedu.save_checkpoint`` files whose ``state`` holds everything the run needs to go on exactly:
the optimizer's velocities and lr, the plateau schedule, the loader's position (augmentation and
dropout masks are keyed by the sample's position, so there is no generator state to carry), the
epoch, the step, the partial sums of an interrupted epoch and the history. So
``Trainer.from_run("runs/A").fit()`` after a stop ends with the same parameters, bit for bit on the
CPU (same thread count), as a run that was never stopped.

Data parallel (lesson 08): started by ``mpirun -n R``, every rank runs this trainer on its share of
each global batch of ``batch_size`` images (``vggedu.distributed``): one Allreduce of all gradients
per step, the same update everywhere, dropout masks keyed by the global sample index so R ranks
reproduce one process; rank 0 alone writes files and shows progress; ``world_size`` is in every
metrics line. One step reads the device once (the loss and the correct count together, after the
Allreduce); labels are checked on the host before they move; validation accumulates on the device
and reads once per evaluation.

Faults: a NaN or exploding loss raises ``TrainingDiverged`` naming the step and the learning rate;
an output directory that cannot be written fails before any data is loaded; Ctrl-C stops after the
current step and saves ``last.npz``; a training loss that stays at chance, ln(classes), for a whole
epoch gives a ``StallWarning`` naming the usual causes. The data side (datasets, normalisation,
augmentation) is in ``vggedu.rundata``, top-k error and plots in ``vggedu.metrics``.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vggedu.backend import default_device, get_array_module, select_gpu, to_device, to_numpy
from vggedu.checkpoint import load_checkpoint, save_checkpoint
from vggedu.distributed import DataParallel, ShardedLoader, loss_sum, topk_counts, world
from vggedu.metrics import plot_curves
from vggedu.models import build_vgg
from vggedu.optim import SGD, ReduceLROnPlateau
from vggedu.rundata import RunData, load_run_data


@dataclass
class TrainConfig:
    """Everything that defines a training run; the defaults are the paper's (Sect. 3.1) where it gives one."""

    # the net (Table 1)
    config: str = "A"  # column of Table 1: A, A-LRN, B, C, D, E ("tiny": a miniature for tests)
    width: float = 1.0  # multiplier on the conv channels (0.25: d2l's VGG-11 with channels / 4)
    fc_width: int | None = None  # units of fc6 and fc7 (None: the paper's 4096)
    init: str = "paper"  # "paper" N(0, 0.01^2), "glorot" or "he" (see vggedu.models)
    init_from: str | None = None  # checkpoint whose weights start the run (e.g. from `vggedu transplant`)
    dropout: float = 0.5  # dropout ratio after fc6 and fc7
    # the data (vggedu.rundata)
    data: str = "shapes"  # shapes, fashion-mnist, cifar10 or folder:PATH
    size: int = 224  # side of the square crop the net sees (the paper: 224)
    train_images: int | None = None  # train on the first N images only (None: the whole training split)
    val_images: int | None = None  # validation images (None: shapes 1000, others `holdout`)
    holdout: int = 5000  # fashion-mnist, cifar10, folders: training images held out for validation
    augment: bool = True  # rescale to a random S in [size, max_scale * size], random crop, random flip
    max_scale: float = 1.25  # largest training scale as a multiple of size (the paper's [256, 512] is 2x)
    pixel_scale: float = 1 / 255  # net input = (pixel - mean RGB) * pixel_scale (the paper: 1, pixels 0..255)
    data_seed: int = 0  # which shapes images are drawn, which training images are held out
    # the optimisation (Sect. 3.1)
    epochs: int = 74  # the paper stopped after 370K iterations = 74 epochs
    batch_size: int = 256  # mini-batch size
    lr: float = 1e-2  # initial learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 penalty on the weights (not the biases)
    lr_factor: float = 0.1  # the lr is multiplied by this when validation accuracy stops improving
    lr_patience: int = 2  # epochs without improvement before a drop (the paper does not say)
    max_lr_drops: int | None = 3  # the paper made 3 drops
    # the run
    seed: int = 0  # initialisation, shuffling, augmentation and dropout
    out: str = "runs/vgg"  # run directory: metrics.jsonl, curves.png, last.npz, best.npz
    device: str | None = None  # "cpu" or "gpu" (None: $VGGEDU_DEVICE, default cpu)
    workers: int = 1  # threads augmenting each batch (the loader also prefetches in the background)
    progress: bool = True  # a progress bar per epoch: loss, accuracy, images/s
    verbose: bool = True  # one summary line per epoch
    max_loss: float = 50.0  # stop when a batch loss exceeds max_loss * ln(classes), or is NaN/inf
    stall_margin: float = 0.02  # warn when the train loss stays within this fraction of ln(classes) an epoch

    def __post_init__(self):  # a value that makes no sense (epochs -3, lr 0, ...) fails here, naming the field
        from vggedu.commands.train import check_train_config

        check_train_config(self)

    @classmethod
    def quick(cls, **overrides) -> TrainConfig:
        """A run for a 2-core laptop (about a minute): narrow A (width 0.25, FC-256) on shapes at 32x32,
        He initialisation (N(0, 0.01) stalls at this width: lesson 06), batch 64, 6 epochs, patience 1."""
        base = dict(config="A", width=0.25, fc_width=256, init="he", data="shapes", size=32, batch_size=64,
                    epochs=6, lr_patience=1, out="runs/quick")
        return cls(**{**base, **overrides})


# Fields that do not change the arithmetic of a run: they may differ when a run is resumed.
RUN_ONLY = ("epochs", "out", "device", "workers", "progress", "verbose")


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or exploded; the message names the step and the learning rate."""


class StallWarning(UserWarning):
    """The training loss stayed at chance level, ln(classes), for a whole epoch."""


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns."""

    history: list  # one metrics record per epoch (as in metrics.jsonl)
    epoch: int  # epochs completed
    step: int  # optimizer steps taken
    best_val_top1_err: float
    run_dir: Path
    interrupted: bool = False  # stopped by Ctrl-C (last.npz holds the state to resume from)
    paths: dict = field(default_factory=dict)  # last, best, curves, metrics


def check_writable(out) -> Path:
    """Create ``out`` and prove a file can be written there; ValueError naming it otherwise."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{id(path)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"output directory {path} cannot be written ({err.strerror or err}): "
                         "choose another --out") from None
    return path


class Trainer:
    """Train a VGG with SGD + momentum + weight decay and a plateau schedule; see the module docstring.

    ``data``: an already loaded ``RunData`` (or a (train, val) pair of datasets) instead of
    ``cfg.data``; ``model``: a built VGG to train instead of building one; ``resume``: continue the
    run saved in ``cfg.out/last.npz``; ``callbacks``: functions ``f(trainer)`` called after every step;
    ``world``: the ranks of a data-parallel run (default: ``vggedu.distributed.world()``, from mpirun).
    """

    def __init__(self, cfg: TrainConfig, model=None, data=None, resume: bool = False, callbacks=(), world=None):
        self.world = world or _world()
        # rank 0 alone writes; it proves the directory writable before anything slow (an error aborts all ranks)
        self.run_dir = check_writable(cfg.out) if self.world.is_root else Path(cfg.out)
        self.cfg, self.callbacks = cfg, list(callbacks)
        self.paths = {name: self.run_dir / f for name, f in
                      (("last", "last.npz"), ("best", "best.npz"), ("curves", "curves.png"),
                       ("metrics", "metrics.jsonl"))}
        saved = self._saved_run(cfg) if resume else None
        self.data = data if isinstance(data, RunData) else load_run_data(cfg, given=data)
        self.model = model if model is not None else self._build_model(cfg, self.data, fresh=saved is None)
        device = cfg.device or default_device()
        if device == "gpu" and self.world.size > 1:
            select_gpu(self.world.local_rank)  # one GPU per rank on each machine
        self.model.to(device)
        self.chance_loss = math.log(self.data.num_classes)
        self.optimizer = SGD(self.model.params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.schedule = ReduceLROnPlateau(self.optimizer, factor=cfg.lr_factor, patience=cfg.lr_patience,
                                          mode="max", max_drops=cfg.max_lr_drops)
        if self.world.size == 1:
            self.loader = self.data.train_loader(cfg.batch_size, seed=cfg.seed, workers=cfg.workers)
        else:
            self.loader = ShardedLoader(self.data.train, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                        transform=self.data.train_transform(), workers=cfg.workers, world=self.world)
        self.parallel = DataParallel(self.model, self.optimizer, self.world, seed=cfg.seed)
        self.epoch, self.step, self.history = 0, 0, []
        self.best_val_err, self.stall_warned = math.inf, False
        self._reset_sums()
        if saved is not None:
            self._restore(saved)
        elif self.world.is_root:
            self.paths["metrics"].write_text("")  # a fresh run replaces an old run's metrics
        self._boundary = self._snapshot()
        self._busy, self._stop = False, False

    # ------------------------------------------------------------------ building and restoring

    @classmethod
    def from_run(cls, out, callbacks=(), **overrides) -> Trainer:
        """Resume the run in directory ``out`` with its saved config (``overrides``: e.g. ``epochs=``)."""
        ckpt_path = Path(out) / "last.npz"
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"no run to resume in {out}: {ckpt_path} is missing (start without --resume)")
        header_cfg = load_checkpoint(ckpt_path).meta.get("train_config")
        if header_cfg is None:
            raise ValueError(f"{ckpt_path} holds no training config: it was not written by the trainer")
        known = {f.name for f in fields(TrainConfig)}  # a field added since the file was written takes its default
        cfg = TrainConfig(**{k: v for k, v in header_cfg.items() if k in known})
        return cls(replace(cfg, out=str(out), **overrides), resume=True, callbacks=callbacks)

    def _saved_run(self, cfg):
        path = self.paths["last"]
        if not path.is_file():
            raise FileNotFoundError(f"no run to resume in {self.run_dir}: {path} is missing (start without --resume)")
        ckpt = load_checkpoint(path)
        saved_cfg = ckpt.meta.get("train_config", {})
        diff = [f"{f.name}: saved {saved_cfg.get(f.name)!r}, asked {getattr(cfg, f.name)!r}"
                for f in fields(TrainConfig)
                if f.name not in RUN_ONLY and f.name in saved_cfg and saved_cfg[f.name] != getattr(cfg, f.name)]
        if diff:
            raise ValueError(f"cannot resume {path} with a different recipe ({'; '.join(diff)}); "
                             "drop those options or train into a new --out")
        return ckpt

    @staticmethod
    def _build_model(cfg, data, fresh=True):
        kw = dict(num_classes=data.num_classes, input_size=cfg.size, width=cfg.width, fc_width=cfg.fc_width,
                  in_channels=data.in_channels, dropout=cfg.dropout, seed=cfg.seed)
        if not fresh or cfg.init_from is None:  # a resumed run's weights come from its own checkpoint
            return build_vgg(cfg.config, init=cfg.init if fresh else "zeros", **kw)
        ckpt = load_checkpoint(cfg.init_from)
        model = build_vgg(cfg.config, init="zeros", **kw)  # the seed still gives the dropout generator
        want = {k: v for k, v in model.spec().items() if k != "dropout"}
        have = {k: ckpt.spec.get(k) for k in want}
        if want != have:
            diff = ", ".join(f"{k} {have[k]!r} in the file vs {want[k]!r} here" for k in want if want[k] != have[k])
            raise ValueError(f"--init-from {cfg.init_from} does not fit this run: {diff}")
        return model.load_params(ckpt.params)

    def _dropout_layers(self):
        return [m for m in self.model.net.layers if hasattr(m, "rng")]

    def _snapshot(self) -> dict:
        """Loader position and generator states at a step boundary (what a checkpoint saves)."""
        return {"loader": self.loader.state_dict(),
                "rng": {m.name: m.rng.bit_generator.state for m in self._dropout_layers()}}

    def _reset_sums(self):
        self.sums = {"loss": 0.0, "correct": 0, "seen": 0, "batches": 0, "stall_dev": 0.0, "seconds": 0.0}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                **self._boundary, "epoch": self.epoch, "step": self.step, "sums": dict(self.sums),
                "history": self.history, "best_val_err": self.best_val_err, "stall_warned": self.stall_warned}

    def _restore(self, ckpt):
        s = ckpt.state
        self.model.load_params(ckpt.params)
        self.optimizer.load_state_dict(s["optimizer"])
        self.schedule.load_state_dict(s["schedule"])
        self.loader.load_state_dict(s["loader"])
        for m in self._dropout_layers():
            m.rng.bit_generator.state = s["rng"][m.name]
        self.epoch, self.step, self.history = int(s["epoch"]), int(s["step"]), list(s["history"])
        self.sums = dict(s["sums"])
        self.best_val_err, self.stall_warned = float(s["best_val_err"]), bool(s["stall_warned"])
        # metrics.jsonl may hold an epoch finished after this checkpoint was written: keep the checkpoint's
        if self.world.is_root:
            self.paths["metrics"].write_text("".join(json.dumps(r) + "\n" for r in self.history))

    def save(self, path=None, kind="last") -> Path:
        """Write a checkpoint (rank 0 only: the others have the same state and write nothing)."""
        if not self.world.is_root:
            return Path(path or self.paths[kind])
        meta = {"train_config": asdict(self.cfg), "kind": kind, "epoch": self.epoch, "step": self.step,
                "classes": list(self.data.classes), "input": self.data.input_meta(self.cfg.pixel_scale),
                "best_val_top1_err": self.best_val_err if math.isfinite(self.best_val_err) else None}
        return save_checkpoint(path or self.paths[kind], self.model, state=self.state_dict(), meta=meta)

    # ------------------------------------------------------------------ running

    def _inputs(self, x, y):
        """Labels checked on the host (before they move: no device read needed), pixels normalised, both moved."""
        y = np.asarray(y)
        K = self.data.num_classes
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError(f"labels must be a 1-D integer array, got shape {y.shape}, dtype {y.dtype}")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= K):
            raise ValueError(f"labels out of range: expected 0 <= y < {K}, got min {int(y.min())}, max {int(y.max())}")
        if x is not None:
            x = to_device(self.data.normalise(x, self.cfg.pixel_scale), self.model.device)
        return x, to_device(y, self.model.device)

    def _diverged(self, what) -> TrainingDiverged:
        return TrainingDiverged(
            f"training diverged at step {self.step + 1} (epoch {self.epoch + 1}, lr {self.optimizer.lr:g}): {what}. "
            "Lower the learning rate (--lr), or try another initialisation (--init he / glorot); "
            f"{self.paths['last']} holds the last good epoch, if any.")

    def _check(self, stats):
        """The step's one divergence check, on the summed loss read from the device (before any update)."""
        loss = stats[0] / max(stats[2], 1)
        if not math.isfinite(loss):
            raise self._diverged(f"the loss is {loss} (NaN or infinite class scores)")
        if loss > self.cfg.max_loss * self.chance_loss:
            raise self._diverged(f"loss {loss:.4g} (chance is ln({self.data.num_classes}) = {self.chance_loss:.3f})")
        self._busy = True  # a Ctrl-C now would leave the parameters half-updated

    def train_step(self, x, y, positions=None, n_global: int | None = None) -> tuple[float, int]:
        """One SGD step on a batch (numpy, as the loader gives it); returns (mean loss, correct predictions) of
        the global batch (its size: ``last_step_images``). ``positions``: the samples' indices in the epoch
        (they key the dropout masks; default 0, 1, ...); ``n_global``: the global batch size when x, y are
        this rank's share of it."""
        x, y = self._inputs(x, y)
        n = int(y.shape[0])
        self.parallel.set_dropout_keys(self.loader.epoch, np.arange(n) if positions is None else positions)
        try:
            stats = self.parallel.step(x, y, n_global or n, check=self._check, stop=self._stop)
        finally:
            self._busy = False
        self.step += 1
        if stats[3] > 0:  # some rank was asked to stop (Ctrl-C): every rank stops after this same step
            self._stop = True
        self.last_step_images = int(round(stats[2]))  # the global batch's size
        return float(stats[0] / max(stats[2], 1)), int(round(stats[1]))

    def evaluate(self, dataset=None, batch_size: int | None = None) -> dict:
        """Loss and top-1/top-5 error of the eval-mode net on ``dataset`` (default: the validation split),
        one centre crop per image. Sums stay on the device (one read at the end); each rank takes its share
        of every batch and the sums are added over the ranks."""
        dataset = self.data.val if dataset is None else dataset
        sums, n = None, 0
        for x, y in self.data.eval_batches(dataset, batch_size or self.cfg.batch_size):
            lo, hi = self.world.shard(len(y))
            n += len(y)
            if hi == lo:
                continue
            x, y = self._inputs(x[lo:hi], y[lo:hi])
            scores = self.model.forward(x, train=False)
            xp = get_array_module(scores)
            part = xp.stack([loss_sum(scores, y).astype(np.float64), *(c.astype(np.float64)
                                                                         for c in topk_counts(scores, y))])
            sums = part if sums is None else sums + part
        if n == 0:
            raise ValueError("evaluate: no images to evaluate")
        host = np.zeros(3) if sums is None else np.array(to_numpy(sums), dtype=np.float64)  # the one read
        self.world.allreduce_(host)
        return {"loss": float(host[0] / n), "top1_err": float(1 - host[1] / n), "top5_err": float(1 - host[2] / n),
                "n": n}

    def _run_epoch(self) -> bool:
        """Train until the loader's epoch ends; True when stopped early by Ctrl-C."""
        cfg, n_batches = self.cfg, len(self.loader)
        if self.sums["batches"] >= n_batches:  # stopped after the epoch's last step, before its validation
            return False
        bar = tqdm(total=n_batches, initial=self.sums["batches"], desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                   unit="batch", disable=not (cfg.progress and self.world.is_root), leave=False, dynamic_ncols=True,
                   file=sys.stderr)
        t0, seconds0 = time.perf_counter(), self.sums["seconds"]
        try:
            for x, y in self.loader:
                end = self.loader.position  # the global batch is images start:end of this epoch's order
                start = (end - 1) // cfg.batch_size * cfg.batch_size
                lo, hi = self.world.shard(end - start)  # this rank's share (all of it in a world of one)
                loss, correct = self.train_step(x, y, np.arange(start + lo, start + hi), end - start)
                s = self.sums
                s["loss"] += loss
                s["correct"] += correct
                s["seen"] += self.last_step_images
                s["batches"] += 1
                s["stall_dev"] += abs(loss - self.chance_loss)
                s["seconds"] = seconds0 + time.perf_counter() - t0
                self._boundary = self._snapshot()
                bar.update(1)
                bar.set_postfix(loss=f"{s['loss'] / s['batches']:.3f}", acc=f"{s['correct'] / s['seen']:.3f}",
                                img_s=f"{s['seen'] / max(s['seconds'], 1e-9):.0f}", refresh=False)
                for callback in self.callbacks:
                    callback(self)
                if self._stop:
                    return True
        finally:
            bar.close()
        return False

    def _end_epoch(self):
        cfg, s = self.cfg, self.sums
        val = self.evaluate()
        record = {"epoch": self.epoch + 1, "step": self.step, "lr": self.optimizer.lr,
                  "train_loss": s["loss"] / max(s["batches"], 1),
                  "train_top1_err": 1 - s["correct"] / max(s["seen"], 1),
                  "val_loss": val["loss"], "val_top1_err": val["top1_err"], "val_top5_err": val["top5_err"],
                  "seconds": s["seconds"], "images_per_s": s["seen"] / max(s["seconds"], 1e-9),
                  "world_size": self.world.size}
        record["lr_dropped"] = self.schedule.step(1 - val["top1_err"])  # the paper watched validation accuracy
        record["best"] = val["top1_err"] < self.best_val_err
        record["stalled"] = s["stall_dev"] / max(s["batches"], 1) <= cfg.stall_margin * self.chance_loss
        self.history.append(record)
        root = self.world.is_root
        if root:
            with open(self.paths["metrics"], "a") as f:
                f.write(json.dumps(record) + "\n")
        self.epoch += 1
        self._reset_sums()
        self._boundary = self._snapshot()
        if record["best"]:
            self.best_val_err = val["top1_err"]
            self.save(kind="best")
        self.save(kind="last")
        if root:
            plot_curves(self.history, self.paths["curves"], num_classes=self.data.num_classes,
                        title=f"VGG-{self.model.config} on {self.data.name}: {self.run_dir}"
                        + (f" ({self.world.size} ranks)" if self.world.size > 1 else ""))
        if cfg.verbose and root:
            lr = f"{record['lr']:.0e}" + (f" -> {self.optimizer.lr:.0e}" if record["lr_dropped"] else "")
            star = "  *" if record["best"] else ""
            tqdm.write(f"epoch {record['epoch']:>3}/{cfg.epochs}  train loss {record['train_loss']:.3f} "
                       f"err {100 * record['train_top1_err']:5.1f}%  |  val loss {val['loss']:.3f} "
                       f"top-1 {100 * val['top1_err']:5.1f}% top-5 {100 * val['top5_err']:5.1f}%  |  lr {lr}  "
                       f"{record['seconds']:.0f} s, {record['images_per_s']:.0f} img/s{star}")
        if record["stalled"] and not self.stall_warned:
            self.stall_warned = True
            if root:
                warnings.warn(StallWarning(stall_message(record, self.data.num_classes, cfg)), stacklevel=3)

    def fit(self, epochs: int | None = None) -> TrainResult:
        """Train up to epoch ``epochs`` (default ``cfg.epochs``), continuing from where the run is."""
        last = self.cfg.epochs if epochs is None else min(int(epochs), self.cfg.epochs)
        self._stop, interrupted = False, False
        previous = self._catch_sigint()
        try:
            while self.epoch < last and not interrupted:
                interrupted = self._stop or self._run_epoch()
                if not interrupted:
                    self._busy = True  # validation, history, checkpoints: not a state to save half-way
                    self._end_epoch()
                    self._busy = False
        except KeyboardInterrupt:
            interrupted = True
            if self._busy or self._stop:  # mid-update, or a second Ctrl-C: keep the last good checkpoint
                if self.world.is_root:
                    print(f"\naborted at step {self.step}; {self.paths['last']} was not rewritten", file=sys.stderr)
                return self._result(True)
        finally:
            self._busy = False
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if interrupted:
            self.save(kind="last")
            if self.world.is_root:
                print(f"\ninterrupted at step {self.step} (epoch {self.epoch + 1}); saved {self.paths['last']}; "
                      "continue with --resume", file=sys.stderr)
        return self._result(interrupted)

    def _result(self, interrupted):
        return TrainResult(self.history, self.epoch, self.step, self.best_val_err, self.run_dir, interrupted,
                           dict(self.paths))

    def _catch_sigint(self):
        """First Ctrl-C: finish the current step, save, return. A second one interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop:
                raise KeyboardInterrupt
            self._stop = True
            print("\nCtrl-C: stopping after this step and saving (press again to abort)", file=sys.stderr)

        return signal.signal(signal.SIGINT, handler)


def stall_message(record, num_classes, cfg) -> str:
    start = f"weights from {cfg.init_from}" if cfg.init_from else f"init {cfg.init!r}"
    return (f"the training loss stayed at chance level for all of epoch {record['epoch']} (mean "
            f"{record['train_loss']:.3f}, ln({num_classes}) = {math.log(num_classes):.3f}): the net is not learning. "
            f"Likely causes: the initialisation ({start}; N(0, 0.01), the paper's, shrinks the signal layer after "
            "layer in deep or narrow nets: try init 'he' or 'glorot', or transplant from a trained A as the paper "
            f"did), or the learning rate with momentum (lr {cfg.lr:g}, momentum {cfg.momentum:g}: too high and the "
            "ReLUs die, try lr / 10; too low and nothing moves). A plain VGG can also sit at chance for a few "
            "epochs before it takes off: more steps (a smaller batch) may be all it needs.")


def _world():
    return world()


def train(cfg: TrainConfig | None = None, **overrides) -> TrainResult:
    """``Trainer(replace(cfg, **overrides)).fit()``: a one-line run (cfg defaults to ``TrainConfig()``)."""
    return Trainer(replace(cfg or TrainConfig(), **overrides)).fit()


__all__ = ["StallWarning", "TrainConfig", "TrainResult", "Trainer", "TrainingDiverged",
           "check_writable", "train"]
