"""Depth compared fairly (the paper's Table 3, small): VGG-A to a plateau, then the same extra epochs for every arm.

Sect. 3.1 and Table 3: A (11 layers) is trained from random weights; the deeper nets start from A's
first four conv layers and three FC layers ("we did not decrease the learning rate for the
pre-initialised layers") and end with lower error (A 29.6 % top-1 against D 27.0 % at S = 256).
Here, on the embedded ``shapes`` data at 32x32, with narrow nets:

1. VGG-A from random (He) weights, ``--epochs-a`` epochs (plateau schedule, patience 2): its best
   checkpoint (by validation error) is the transplant source;
2. then, for the same extra budget of ``--epochs-extra`` epochs, each arm trains with the same recipe
   (lr 0.01 for every layer, momentum 0.9, weight decay 5e-4, plateau schedule; dropout 0 by default,
   see RESULTS.md: with the paper's 0.5 the narrow A sat at chance for longer than this budget):
   - ``A continued``: A's run resumed (its optimizer and schedule state, lr possibly dropped);
   - ``A restarted``: A's best weights with a fresh optimizer at lr 0.01 (what the transplants get);
   - ``D transplant``, ``B transplant``, ``E transplant``: A's seven layers, the rest He-initialised;
   - ``D He``: D from He's random weights (it gets only the extra budget, not A's epochs);
3. every arm's best checkpoint (by validation error) is tested on the 1000-image test split.

Every arm runs for each seed (the seed sets A's and the arm's initialisation, shuffling,
augmentation and dropout); the table gives the mean and the spread (min-max) of the test error.

    python bench/depth.py                      # the full run (RESULTS.md: minutes on 2 cores)
    python bench/depth.py --quick              # a smoke test in about a minute
    python bench/depth.py --write-results      # also replace the section in bench/RESULTS.md

Writes ``--out``/depth.json (settings, every arm's curves and test error; a full run also copies it to
``bench/depth.json``, which lesson 06 reads), ``figures/depth_comparison.png`` (full run only) and, with
``--write-results``, the section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import describe_machine  # noqa: E402

from vggedu import build_vgg, load_checkpoint, transplant  # noqa: E402
from vggedu.data import load_dataset  # noqa: E402
from vggedu.rundata import load_run_data  # noqa: E402
from vggedu.train import TrainConfig, Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("A continued", "A restarted", "D transplant", "D He", "B transplant", "E transplant")
BEGIN, END = "<!-- depth.py: begin -->", "<!-- depth.py: end -->"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny nets, 1000 images, 2+1 epochs (a smoke test)")
    p.add_argument("--width", type=float, default=0.25, help="conv width multiplier")
    p.add_argument("--fc-width", type=int, default=256, help="units of fc6 and fc7")
    p.add_argument("--train-images", type=int, default=5000)
    p.add_argument("--val-images", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--dropout", type=float, default=0.0, help="after fc6 and fc7 (the paper: 0.5; see RESULTS.md)")
    p.add_argument("--patience", type=int, default=2, help="epochs without a better validation error before lr / 10")
    p.add_argument("--init-a", default="he", help="A's initialisation (paper, glorot, he)")
    p.add_argument("--epochs-a", type=int, default=12, help="A's first stage (to a plateau)")
    p.add_argument("--epochs-extra", type=int, default=6, help="the extra budget every arm gets")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", default=list(ARMS[:4]), choices=ARMS, help="B and E transplant: add them")
    p.add_argument("--out", default="runs/depth")
    p.add_argument("--figure", default=str(ROOT / "figures" / "depth_comparison.png"))
    p.add_argument("--write-results", action="store_true", help="replace the depth section of bench/RESULTS.md")
    p.add_argument("--from-json", help="no training: redraw the figure (and --write-results) from a saved depth.json")
    p.add_argument("--reading", help="a paragraph that reads the results, stored in depth.json and RESULTS.md")
    args = p.parse_args(argv)
    if args.quick:
        args.width, args.fc_width, args.train_images, args.val_images = 0.125, 64, 1000, 200
        args.epochs_a, args.epochs_extra, args.seeds = 2, 1, args.seeds[:2]
    return args


def recipe(args, config, out, seed, epochs, init="he"):
    return TrainConfig(config=config, width=args.width, fc_width=args.fc_width, init=init, data="shapes", size=32,
                       train_images=args.train_images, val_images=args.val_images, batch_size=args.batch,
                       lr=args.lr, dropout=args.dropout, epochs=epochs, lr_patience=args.patience, seed=seed,
                       out=str(out), progress=False, verbose=False)


def summary(history):
    return [{k: r[k] for k in ("epoch", "lr", "train_loss", "train_top1_err", "val_top1_err", "seconds")}
            for r in history]


def test_error(trainer, test) -> float:
    """The run's best checkpoint (by validation error) on the test split."""
    trainer.model.load_params(load_checkpoint(trainer.paths["best"]).params)
    return trainer.evaluate(test)["top1_err"]


def run_seed(args, seed, data, test, log):
    out = Path(args.out) / f"seed{seed}"
    t0 = time.perf_counter()
    a = Trainer(recipe(args, "A", out / "A", seed, args.epochs_a, init=args.init_a), data=data)
    a.fit()
    rec = {"A": {"history": summary(a.history), "test_top1_err": test_error(a, test),
                 "minutes": (time.perf_counter() - t0) / 60}}
    log(f"seed {seed}  A after {args.epochs_a} epochs: val {100 * a.best_val_err:.1f}%, "
        f"test {100 * rec['A']['test_top1_err']:.1f}%  ({rec['A']['minutes']:.1f} min)")
    source = out / "A" / "best.npz"
    for arm in args.arms:
        t0 = time.perf_counter()
        arm_dir = out / arm.replace(" ", "-")
        if arm == "A continued":
            shutil.rmtree(arm_dir, ignore_errors=True)
            shutil.copytree(out / "A", arm_dir)
            tr = Trainer.from_run(arm_dir, epochs=args.epochs_a + args.epochs_extra, progress=False, verbose=False)
            tr.fit()
            history = tr.history[args.epochs_a:]
        else:
            config = arm[0]
            model = build_vgg(config, num_classes=data.num_classes, input_size=32, width=args.width,
                              fc_width=args.fc_width, in_channels=data.in_channels, dropout=args.dropout, init="he",
                              seed=seed + 100)
            if arm == "A restarted":
                model.load_params(load_checkpoint(source).params)
            elif arm.endswith("transplant"):
                transplant(source, model, layers="paper")
            tr = Trainer(recipe(args, config, arm_dir, seed, args.epochs_extra), model=model, data=data)
            tr.fit()
            history = tr.history
        rec[arm] = {"history": summary(history), "test_top1_err": test_error(tr, test),
                    "minutes": (time.perf_counter() - t0) / 60}
        log(f"seed {seed}  {arm:<13} +{args.epochs_extra} epochs: test {100 * rec[arm]['test_top1_err']:.1f}%, "
            f"final train loss {history[-1]['train_loss']:.3f}  ({rec[arm]['minutes']:.1f} min)")
    return rec


def table(result) -> list[dict]:
    rows = []
    for arm in ["A", *result["settings"]["arms"]]:
        errs = [100 * s[arm]["test_top1_err"] for s in result["seeds"].values()]
        rows.append({"arm": arm, "errors": errs, "mean": statistics.fmean(errs), "min": min(errs), "max": max(errs),
                     "minutes": sum(s[arm]["minutes"] for s in result["seeds"].values())})
    return rows


def format_table(result) -> str:
    s = result["settings"]
    lines = ["| arm | epochs | test top-1 error per seed (%) | mean (%) | spread min-max (%) | minutes (all seeds) |",
             "|---|---|---|---|---|---|"]
    for r in table(result):
        epochs = (f"{s['epochs_a']}" if r["arm"] == "A" else
                  f"{s['epochs_a']} (A) + {s['epochs_extra']}" if r["arm"] != "D He" else f"{s['epochs_extra']}")
        lines.append(f"| {r['arm']} | {epochs} | {', '.join(f'{e:.1f}' for e in r['errors'])} | {r['mean']:.1f} | "
                     f"{r['min']:.1f}-{r['max']:.1f} | {r['minutes']:.1f} |")
    return "\n".join(lines)


def draw(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    s, rows = result["settings"], table(result)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.2))
    for i, arm in enumerate(["A", *s["arms"]]):
        for j, rec in enumerate(result["seeds"].values()):
            h = rec[arm]["history"]
            # every arm's extra epochs are drawn after A's stage (A continued's records carry their own epochs)
            offset = 0 if arm in ("A", "A continued") else s["epochs_a"]
            ax0.plot([offset + r["epoch"] for r in h], [100 * r["val_top1_err"] for r in h], "o-", ms=2,
                     color=f"C{i}", alpha=0.8, label=arm if j == 0 else None)
    ax0.axvline(s["epochs_a"] + 0.5, color="grey", ls=":")
    ax0.axhline(100 * (1 - 1 / 10), color="grey", ls="--", lw=0.8)
    ax0.set(xlabel="epoch (A's stage, then the extra budget)", ylabel="validation top-1 error (%)", yscale="log",
            title="every seed's curve")
    ax0.legend(fontsize=8)
    for i, r in enumerate(rows):
        ax1.errorbar([i], [r["mean"]], yerr=[[r["mean"] - r["min"]], [r["max"] - r["mean"]]], fmt="o",
                     color=f"C{i}", capsize=4)
        ax1.scatter([i] * len(r["errors"]), r["errors"], color=f"C{i}", s=10, alpha=0.6)
    ax1.set_xticks(range(len(rows)), [r["arm"] for r in rows], rotation=20)
    ax1.set(yscale="log", ylabel="test top-1 error (%), mean and min-max")
    ax1.set_title(f"after +{s['epochs_extra']} epochs, {len(result['seeds'])} seeds")
    for ax in (ax0, ax1):
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"Depth on shapes 32x32: width {s['width']:g}, FC-{s['fc_width']}, {s['train_images']} images, "
                 f"A {s['epochs_a']} epochs then +{s['epochs_extra']} for every arm (bench/depth.py)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def results_section(result) -> str:
    s = result["settings"]
    return "\n".join([
        BEGIN,
        f"## Depth compared fairly (`bench/depth.py`, issue 11), {s['date']}",
        "",
        f"The paper's Table 3 in small. `shapes` at 32x32, {s['train_images']} training and {s['val_images']} "
        f"validation images, tested on the 1000-image test split (best checkpoint by validation error). Nets: "
        f"conv width {s['width']:g}, FC-{s['fc_width']}, dropout {s['dropout']:g}. Recipe for every run: "
        f"batch {s['batch']}, "
        f"lr {s['lr']:g} for every layer (the paper's rule: no lower lr for transplanted layers), momentum 0.9, "
        f"weight decay 5e-4, lr / 10 after {s['patience']} epochs without a better validation error (at most 3 "
        "drops). "
        f"VGG-A from {s['init_a']} initialisation for {s['epochs_a']} epochs; then every arm gets the same "
        f"+{s['epochs_extra']} epochs: A continued (its schedule state kept), A restarted (A's best weights, fresh "
        f"lr {s['lr']:g}), the deeper nets from A's transplant (the other layers He), D from He alone. "
        f"Seeds {', '.join(map(str, s['seeds']))}. {s['minutes']:.0f} minutes in all on {s['machine']} "
        "(machine shared with other jobs: minutes are an upper bound).",
        "",
        format_table(result),
        "",
        "![depth](../figures/depth_comparison.png)",
        "",
        result.get("reading", ""),
        END,
    ])


def write_results(result, path=ROOT / "bench" / "RESULTS.md"):
    text = path.read_text()
    section = results_section(result)
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv=None):
    args = parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        if args.reading:
            result["reading"] = args.reading
            (ROOT / "bench" / "depth.json").write_text(json.dumps(result, indent=1))
        print(format_table(result))
        draw(result, args.figure)
        if args.write_results:
            write_results(result)
        return 0
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(f"[{(time.perf_counter() - t0) / 60:5.1f} min] {msg}", flush=True)

    base = recipe(args, "A", out, 0, 1)
    data = load_run_data(base)
    test = load_dataset("shapes", "test", size=32)
    log(f"shapes: {len(data.train)} train, {len(data.val)} val, {len(test)} test images; arms {args.arms}")
    result = {"settings": {**{k: v for k, v in vars(args).items() if k not in ("out", "figure", "write_results")},
                           "date": time.strftime("%Y-%m-%d"), "machine": describe_machine()},
              "seeds": {}}
    for seed in args.seeds:
        result["seeds"][str(seed)] = run_seed(args, seed, data, test, log)
        result["settings"]["minutes"] = (time.perf_counter() - t0) / 60
        (out / "depth.json").write_text(json.dumps(result, indent=1))
    print(format_table(result))
    if not args.quick:
        (ROOT / "bench" / "depth.json").write_text(json.dumps(result, indent=1))
        draw(result, args.figure)
        print(f"figure: {args.figure}")
    if args.write_results:
        write_results(result)
        print("bench/RESULTS.md: depth section written")
    chance = 100 * (1 - 1 / 10)
    stuck = [f"{arm} seed {seed}" for seed, rec in result["seeds"].items() for arm, r in rec.items()
             if math.isclose(100 * r["test_top1_err"], chance, abs_tol=5)]
    if stuck:
        print(f"at chance (test error within 5 points of {chance:.0f}%): {', '.join(stuck)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
