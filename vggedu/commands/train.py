"""``vggedu train``: train a VGG on shapes, Fashion-MNIST, CIFAR-10 or an image folder (see ``vggedu.train``).

    vggedu train --config A --data shapes --size 32 --width 0.25 --epochs 5 --init he --out runs/A
    vggedu train --out runs/A --resume --epochs 10          # continue runs/A/last.npz up to epoch 10
    vggedu train --config D --init-from runs/D-init.npz --data shapes --out runs/D

Options left out take the paper's values (``TrainConfig``: batch 256, lr 1e-2, momentum 0.9, weight
decay 5e-4, dropout 0.5, at most 74 epochs), except ``--size``: 32 for shapes, Fashion-MNIST and
CIFAR-10, 224 for image folders. With ``--init-from`` the architecture (config, width, FC width,
size) defaults to the checkpoint's; with ``--resume`` everything defaults to the saved run's.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import fields, replace

from vggedu.commands import warnings_as_lines
from vggedu.configs import CONFIGS

# command-line option -> TrainConfig field
OPTIONS = {"config": "config", "data": "data", "size": "size", "width": "width", "fc_width": "fc_width",
           "epochs": "epochs", "batch": "batch_size", "lr": "lr", "momentum": "momentum",
           "weight_decay": "weight_decay", "dropout": "dropout", "patience": "lr_patience", "init": "init",
           "init_from": "init_from", "seed": "seed", "out": "out", "train_images": "train_images",
           "val_images": "val_images", "holdout": "holdout", "augment": "augment", "device": "device",
           "workers": "workers", "progress": "progress"}




def _integer(low):
    return lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low


def _number(ok):
    return lambda v: (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and ok(v))


# TrainConfig field -> (test, what the value must be); None passes wherever a field allows it
RULES = {
    "epochs": (_integer(1), "a positive integer"),
    "batch_size": (_integer(1), "a positive integer"),
    "lr": (_number(lambda v: v > 0), "a positive number"),
    "momentum": (_number(lambda v: 0 <= v < 1), "in [0, 1)"),
    "weight_decay": (_number(lambda v: v >= 0), "a non-negative number"),
    "dropout": (_number(lambda v: 0 <= v < 1), "in [0, 1)"),
    "size": (_integer(1), "a positive integer"),
    "width": (_number(lambda v: v > 0), "a positive number"),
    "fc_width": (_integer(1), "a positive integer"),
    "train_images": (_integer(1), "a positive integer"),
    "val_images": (_integer(1), "a positive integer"),
    "holdout": (_integer(1), "a positive integer"),
    "lr_patience": (_integer(0), "a non-negative integer"),
    "workers": (_integer(1), "at least 1"),
    "seed": (_integer(0), "a non-negative integer"),
    "data_seed": (_integer(0), "a non-negative integer"),
    "max_scale": (_number(lambda v: v >= 1), "a number >= 1"),
    "pixel_scale": (_number(lambda v: v > 0), "a positive number"),
    "lr_factor": (_number(lambda v: 0 < v < 1), "in (0, 1)"),
    "max_lr_drops": (_integer(0), "a non-negative integer"),
    "max_loss": (_number(lambda v: v > 0), "a positive number"),
    "stall_margin": (_number(lambda v: v >= 0), "a non-negative number"),
}
FIELD_OPTION = {field: "--" + opt.replace("_", "-") for opt, field in OPTIONS.items()}


def check_train_config(values, name_of=None) -> None:
    """Raise ValueError naming the first value of a TrainConfig (or a dict of its fields) that makes no
    sense (``RULES``): a non-positive number of epochs, batch size, learning rate, size, ...
    ``name_of(field)`` is how the message names it (default ``TrainConfig.<field>``)."""
    if not isinstance(values, dict):
        values = {f.name: getattr(values, f.name) for f in fields(values)}
    name_of = name_of or (lambda field: f"TrainConfig.{field}")
    for field, value in values.items():
        if field in RULES and value is not None and not RULES[field][0](value):
            raise ValueError(f"{name_of(field)} must be {RULES[field][1]}, got {value!r}")


def check_options(args) -> None:
    """The command line's numbers, checked before anything is created (the message names the option)."""
    check_train_config(given(args), name_of=lambda field: FIELD_OPTION.get(field, field))


def check_architecture(cfg) -> None:
    """The net a new run would build fits its size (e.g. five 2x2 pools need 32x32), before a file is written."""
    from vggedu.configs import layer_table

    layer_table(cfg.config, 10, cfg.size, cfg.width, cfg.fc_width, 3, cfg.dropout)  # computes shapes only


def register(subparsers):
    p = subparsers.add_parser(
        "train", help="train a VGG (progress, validation, checkpoints, curves; resumable)",
        description="Train a VGG with the paper's recipe (Sect. 3.1): SGD with momentum 0.9 and weight decay "
        "5e-4, dropout 0.5 on fc6/fc7, lr divided by 10 when validation accuracy stops improving. Writes "
        "metrics.jsonl, curves.png, last.npz and best.npz into --out. Ctrl-C saves last.npz; --resume continues.")
    g = p.add_argument_group("net")
    g.add_argument("--config", help=f"one of {', '.join(CONFIGS)} (default A)")
    g.add_argument("--width", type=float, help="multiplier on conv channels (default 1; 0.25 for a CPU)")
    g.add_argument("--fc-width", type=int, help="units in fc6 and fc7 (default 4096)")
    g.add_argument("--init", choices=("paper", "glorot", "he"),
                   help="paper: N(0, 0.01^2) (default); glorot; he")
    g.add_argument("--init-from", metavar="CKPT.npz", help="start from these weights (e.g. from vggedu transplant)")
    g.add_argument("--dropout", type=float, help="dropout after fc6 and fc7 (default 0.5)")
    g = p.add_argument_group("data")
    g.add_argument("--data", help="shapes (default), fashion-mnist, cifar10 or folder:PATH")
    g.add_argument("--size", type=int, help="input side (default 32; 224 for folder:PATH)")
    g.add_argument("--train-images", type=int, metavar="N", help="train on the first N images only")
    g.add_argument("--val-images", type=int, metavar="N",
                   help="validation images (default: shapes 1000, else --holdout)")
    g.add_argument("--holdout", type=int, metavar="N", help="training images held out for validation (default 5000)")
    g.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                   help="no scale jittering, random crops or flips")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help="train up to this epoch (default 74)")
    g.add_argument("--batch", type=int, help="mini-batch size (default 256)")
    g.add_argument("--lr", type=float, help="initial learning rate (default 0.01)")
    g.add_argument("--momentum", type=float, help="default 0.9")
    g.add_argument("--weight-decay", type=float, help="default 5e-4")
    g.add_argument("--patience", type=int, help="epochs without validation improvement before lr /= 10 (default 2)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, help="initialisation, shuffling, augmentation, dropout (default 0)")
    g.add_argument("--out", required=True, metavar="DIR", help="run directory (created)")
    g.add_argument("--resume", action="store_true", help="continue the run saved in DIR/last.npz")
    g.add_argument("--test", action="store_true", help="after training, report best.npz's error on the test split")
    g.add_argument("--device", choices=("cpu", "gpu"), help="default: $VGGEDU_DEVICE or cpu")
    g.add_argument("--workers", type=int, help="augmentation threads (default 1)")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    p.set_defaults(func=run)
    return p


def given(args) -> dict:
    """The TrainConfig fields set on the command line."""
    return {field: getattr(args, opt) for opt, field in OPTIONS.items() if getattr(args, opt, None) is not None}


def config_from_args(args):
    """A new run's TrainConfig: paper defaults, the checkpoint's architecture with --init-from, then the options."""
    from vggedu.train import TrainConfig

    chosen = given(args)
    if "size" not in chosen and "init_from" not in chosen:
        chosen["size"] = 224 if chosen.get("data", "shapes").lower().startswith("folder:") else 32
    if "init_from" in chosen:
        from vggedu.checkpoint import load_checkpoint

        spec = load_checkpoint(chosen["init_from"]).spec
        arch = {"config": spec["config"], "width": spec["width"], "fc_width": spec["fc_width"],
                "size": spec["input_size"]}
        chosen = {**arch, **chosen}
    return replace(TrainConfig(), **chosen)


def run(args) -> int:
    from vggedu.distributed import abort_on_error, world

    with abort_on_error(world(), prog="vggedu train"):  # under mpirun: an error on any rank stops them all
        return _run(args)


def _run(args) -> int:
    from vggedu.distributed import world
    from vggedu.evaluate import evaluate_checkpoint
    from vggedu.train import Trainer, TrainingDiverged

    check_options(args)
    try:
        if args.resume:
            trainer = Trainer.from_run(args.out, **{k: v for k, v in given(args).items() if k != "out"})
            say = print if trainer.world.is_root else _quiet
            say(f"resuming {args.out} after epoch {trainer.epoch} (step {trainer.step}), "
                f"up to epoch {trainer.cfg.epochs}")
        else:
            cfg = config_from_args(args)
            check_architecture(cfg)
            trainer = Trainer(cfg)
            say = print if trainer.world.is_root else _quiet
        m, ranks = trainer.model, trainer.world.size
        say(f"VGG-{m.config} width {m.width:g} FC {m.fc_width} input {m.input_size}x{m.input_size}x{m.in_channels}, "
            f"{m.num_params():,} parameters; {trainer.data.name}: {len(trainer.data.train)} train / "
            f"{len(trainer.data.val)} val images, {trainer.data.num_classes} classes; run dir {trainer.run_dir}"
            + (f"; {ranks} ranks, {trainer.cfg.batch_size // ranks}-{-(-trainer.cfg.batch_size // ranks)} "
               "images each per step" if ranks > 1 else ""))
        with warnings_as_lines():
            result = trainer.fit()
    except TrainingDiverged as err:  # every rank sees the same summed loss: all stop here together
        if world().is_root:
            print(f"vggedu train: {err}", file=sys.stderr)
        return 1
    if result.interrupted:
        return 130
    best = result.paths["best"]
    say(f"best validation top-1 error {100 * result.best_val_top1_err:.1f}%; checkpoints {best} and "
        f"{result.paths['last']}; curves {result.paths['curves']}")
    if args.test and trainer.world.is_root and best.is_file():
        r = evaluate_checkpoint(best, device=trainer.model.device)  # the device the run trained on
        print(f"test: top-1 error {100 * r['top1_err']:.2f}%, top-5 error {100 * r['top5_err']:.2f}% "
              f"on {r['n']} images ({r['data']}, single centre crop)")
    return 0


def _quiet(*args, **kwargs):
    pass
