"""The paper's test protocol and its two scale findings in miniature (Tables 3-6; issue 14, lesson 07).

Two VGG-A nets (conv width 1/4, FC-256, 32x32 input: the 224 net at 1/7 scale) are trained on
``shapes``, whose objects vary in size by a factor of 3.4 (radius 0.125 to 0.42 of the image side,
log-uniform): scale is what varies, as in ImageNet photos. Images are drawn at 80x80 and every
training and test image is rescaled from there. The two nets differ only in the training scale S
(Sect. 3.1, scaled by 32/224):

    fixed      S = 40 (the paper's S = 256 for 224 crops is 1.14x the crop; 40 is 1.25x)
    jittered   S drawn per image from [40, 80] (the paper's [256, 512]: a factor of 2)

then a random 32x32 crop and a random flip. As in the paper (multi-scale nets were fine-tuned from a
single-scale one), one net is first trained at S = 40 (stage 1, ``--epochs``), then both nets start
from its weights and train ``--fine-tune-epochs`` more at ``--fine-tune-lr``, one at fixed S, one
jittered (stage 2). Each net is tested on 1000 test images with the four
methods of Sect. 3.2 (centre crop, dense, 50-crop multi-crop, dense + multi-crop; every one averaged
with the mirror image) at one scale (Q = S = 40 for the fixed net, Q = 60 for the jittered one, the
paper's Q = 384) and at three (``vggedu.evaluate.default_scales``: {35, 40, 45}, i.e. S -+ 32 * 32/224;
{40, 60, 80}), each net also densely at the other's scales, and the two nets fused (posteriors
averaged, each at its three scales). The table goes into bench/RESULTS.md between markers, the figure
to figures/paper_tables.png, everything to bench/paper_tables.json (which lesson 07 reads).

    flock /work/.heavy.lock .venv/bin/python bench/paper_tables.py                # the experiment, ~25 min
    flock /work/.heavy.lock .venv/bin/python bench/paper_tables.py --epoch-only   # time one epoch (sizing)
    .venv/bin/python bench/paper_tables.py --quick --no-write                     # smoke test, ~2 min
    flock /work/.heavy.lock .venv/bin/python bench/paper_tables.py --speed        # dense vs 50 crops, VGG-D

``--speed``: Sect. 3.2's argument for dense evaluation. One 384x384 image (Q = 384) through a full-size
VGG-D (224 input, random weights): dense (the whole 384x384 image and its flip through the fully
convolutional net) against 50 crops of 224 (5x5 grid x flips), seconds (best of 3) and FLOPs (counted
layer by layer from the shapes: 2 * KH * KW * C * F * OH * OW per conv, fc layers as convs), once
with OpenBLAS's Haswell kernel forced and once self-detected (two subprocesses).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import blas_kernel, describe_machine  # noqa: E402

from vggedu.commands.evaluate import format_table  # noqa: E402
from vggedu.evaluate import (  # noqa: E402
    METHODS,
    PosteriorCache,
    default_scales,
    fuse,
    load_test_net,
    posterior_errors,
    protocol_error,
)
from vggedu.rundata import RunData, load_split  # noqa: E402
from vggedu.train import TrainConfig, Trainer  # noqa: E402

NATIVE = 80  # side at which the shapes images are drawn
SIZE = 32  # the nets' input (crop) size
NETS = {"fixed": {"S": (40, 40), "Q": 40}, "jittered": {"S": (40, 80), "Q": 60}}
RESULTS_MD, FIGURE, JSON = ROOT / "bench" / "RESULTS.md", ROOT / "figures" / "paper_tables.png", \
    ROOT / "bench" / "paper_tables.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=16, help="stage 1: the shared start, trained at fixed S")
    p.add_argument("--fine-tune-epochs", type=int, default=10, help="stage 2: each net, from stage 1's weights")
    p.add_argument("--train-images", type=int, default=10000)
    p.add_argument("--test-images", type=int, default=5000)
    p.add_argument("--lr", type=float, default=0.01, help="stage 1")
    p.add_argument("--fine-tune-lr", type=float, default=0.002, help="stage 2 (the paper fine-tuned at 1e-3)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--patience", type=int, default=3, help="epochs without validation gain before lr /= 10")
    p.add_argument("--out", default="runs/paper_tables")
    p.add_argument("--quick", action="store_true", help="1000 training images, 2 epochs, 100 test images")
    p.add_argument("--epoch-only", action="store_true", help="train each net one epoch and print the time")
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md, the figure or the JSON")
    p.add_argument("--reuse", action="store_true", help="test the nets already trained in --out (same epochs)")
    p.add_argument("--speed", action="store_true", help="dense vs 50 crops for VGG-D at Q = 384, both kernels")
    p.add_argument("--speed-one", action="store_true", help=argparse.SUPPRESS)  # one kernel, in a subprocess
    return p.parse_args(argv)


def train_run(run, args, train, val, S_range, val_Q, epochs, lr, init_from=None):
    """Train one stage (or reuse it with --reuse): returns (best validation top-1 error, seconds)."""
    run = Path(args.out) / run
    if args.reuse and (run / "best.npz").is_file():
        from vggedu.metrics import read_metrics

        history = read_metrics(run)
        if len(history) == epochs:
            print(f"{run}: reusing {len(history)} epochs", flush=True)
            return min(r["val_top1_err"] for r in history), sum(r["seconds"] for r in history)
    cfg = TrainConfig(config="A", width=0.25, fc_width=256, init="he", init_from=init_from, data="shapes", size=SIZE,
                      epochs=epochs, batch_size=args.batch, lr=lr, lr_patience=args.patience, out=str(run),
                      progress=False)
    t0 = time.perf_counter()
    result = Trainer(cfg, data=RunData("shapes", train, val, SIZE, S_range=S_range, eval_Q=val_Q)).fit()
    seconds = time.perf_counter() - t0
    print(f"{run}: S in {S_range}, {result.epoch} epochs in {seconds:.0f} s ({seconds / result.epoch:.0f} s/epoch), "
          f"best val top-1 error {100 * result.best_val_top1_err:.1f}%", flush=True)
    return result.best_val_top1_err, seconds


def train_nets(args, train, val):
    """Stage 1: one net at fixed S. Stage 2, from its best weights: go on at fixed S ("fixed") or with S
    jittered ("jittered"), the same number of epochs at the same (lower) learning rate. The paper did the
    same (Sect. 3.1: multi-scale models fine-tuned from a single-scale one, for speed); here it also keeps
    the jittered net from starting cold, which at lr 0.01 sat at chance and then collapsed (RESULTS.md)."""
    fixed = NETS["fixed"]
    _, start_seconds = train_run("start", args, train, val, fixed["S"], fixed["Q"], args.epochs, args.lr)
    best, seconds = {}, {"start": start_seconds}
    for name, spec in NETS.items():
        best[name], seconds[name] = train_run(name, args, train, val, spec["S"], spec["Q"], args.fine_tune_epochs,
                                              args.fine_tune_lr, init_from=str(Path(args.out) / "start" / "best.npz"))
    return best, seconds


def row(net, method, scales, r):
    return {"net": net, "method": method, "scales": list(scales), "top1_err": r["top1_err"],
            "top5_err": r["top5_err"], "n": r["n"], "seconds": round(r.get("seconds", 0.0), 1)}


def experiment(args):
    started = time.perf_counter()
    n_train = 1000 if args.quick else args.train_images
    if args.quick:
        args.epochs, args.fine_tune_epochs = 2, 1
    epochs = args.epochs
    n_test = 100 if args.quick else args.test_images
    train = load_split("shapes", "train", NATIVE, n=n_train)
    val = load_split("shapes", "val", NATIVE, n=500 if args.quick else 1000)
    test = load_split("shapes", "test", NATIVE, n=n_test)
    if args.epoch_only:
        args.epochs = args.fine_tune_epochs = 1
    best_val, seconds = train_nets(args, train, val)
    if args.epoch_only:
        return 0
    train_seconds = sum(seconds.values())
    nets = {name: load_test_net(Path(args.out) / name / "best.npz") for name in NETS}
    cache = PosteriorCache(test.images)
    rows, multi_probs = [], {}
    t_test = time.perf_counter()
    for name, net in nets.items():
        lo, hi = NETS[name]["S"]
        three = default_scales(S=lo, input_size=SIZE) if lo == hi else default_scales(S_range=(lo, hi))
        for scales in ((NETS[name]["Q"],), three):
            for method in METHODS:
                r = protocol_error(net, test.labels, method, scales, cache)
                rows.append(row(name, method, scales, r))
                if len(scales) == 3:
                    multi_probs[(name, method)] = (r["probs"], r["seconds"])
                print(f"{name:9s} {method:16s} Q = {str(scales):14s} top-1 {100 * r['top1_err']:5.1f}%  "
                      f"top-5 {100 * r['top5_err']:5.1f}%  {r['seconds']:.0f} s", flush=True)
    for method in METHODS:  # fusion: each net at its three scales, posteriors averaged (Table 6)
        probs = fuse([multi_probs[(name, method)][0] for name in NETS])
        r = {**posterior_errors(probs, test.labels), "seconds": sum(multi_probs[(n, method)][1] for n in NETS)}
        rows.append(row("fixed + jittered (fusion)", method, ["3 each"], r))
        print(f"fusion    {method:16s} top-1 {100 * r['top1_err']:5.1f}%  top-5 {100 * r['top5_err']:5.1f}%",
              flush=True)
    for name, other in (("fixed", "jittered"), ("jittered", "fixed")):  # each net densely at the other's scales
        lo, hi = NETS[other]["S"]
        scales = default_scales(S=lo, input_size=SIZE) if lo == hi else default_scales(S_range=(lo, hi))
        r = protocol_error(nets[name], test.labels, "dense", scales, cache)
        rows.append(row(f"{name} (at the {other} net's scales)", "dense", scales, r))
    test_seconds = time.perf_counter() - t_test
    total = time.perf_counter() - started
    report = {"date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()) + " UTC", "machine": describe_machine(),
              "blas_kernel": blas_kernel(), "quick": args.quick, "config": "A", "width": 0.25, "fc_width": 256,
              "input_size": SIZE, "native_side": NATIVE, "nets": NETS, "epochs": epochs, "lr": args.lr,
              "fine_tune_epochs": args.fine_tune_epochs, "fine_tune_lr": args.fine_tune_lr,
              "train_seconds_per_stage": {k: round(v, 1) for k, v in seconds.items()},
              "patience": args.patience, "batch": args.batch, "train_images": len(train), "val_images": len(val),
              "test_images": len(test),
              "best_val_top1_err": best_val,
              "train_seconds": round(train_seconds, 1), "test_seconds": round(test_seconds, 1),
              "total_seconds": round(total, 1), "rows": rows}
    print(f"\n{table(rows)}\n\ntook {total / 60:.1f} min (training {train_seconds / 60:.1f}, "
          f"testing {test_seconds / 60:.1f})")
    if not args.no_write:
        JSON.write_text(json.dumps(report, indent=1) + "\n")
        draw(report, FIGURE)
        write_section("experiment", results_section(report))
        print(f"wrote {JSON.relative_to(ROOT)}, {FIGURE.relative_to(ROOT)} and a section of "
              f"{RESULTS_MD.relative_to(ROOT)}")
    return 0


def table(rows) -> str:
    """RESULTS.md's table: ``vggedu evaluate``'s, with the training scale as the net's name."""
    return format_table(rows, net_header="trained at", seconds_format=".0f")


def draw(report, path):
    from matplotlib.figure import Figure

    rows = report["rows"]
    groups = [("fixed", 1), ("fixed", 3), ("jittered", 1), ("jittered", 3), ("fixed + jittered (fusion)", 1)]
    labels = ["fixed S, 1 scale", "fixed S, 3 scales", "jittered S, 1 scale", "jittered S, 3 scales",
              "fusion, 3 scales each"]
    fig = Figure(figsize=(9, 3.8))
    ax = fig.subplots()
    width = 0.16
    for g, ((net, k), label) in enumerate(zip(groups, labels)):
        errs = [100 * next(r["top1_err"] for r in rows if r["net"] == net and r["method"] == m
                           and (len(r["scales"]) == k or net.startswith("fixed +"))) for m in METHODS]
        ax.bar(np.arange(len(METHODS)) + (g - 2) * width, errs, width, label=label)
    ax.set_xticks(np.arange(len(METHODS)), METHODS)
    lo = min(100 * r["top1_err"] for r in rows)
    ax.set_ylim(max(0, lo - 5), None)
    ax.set_ylabel("top-1 error (%)")
    ax.set_title(f"VGG-A (1/4 width) on shapes, {report['epochs']} + {report['fine_tune_epochs']} epochs: "
                 "test protocol x training scale")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_section(key, text):
    """Replace the text between ``<!-- paper_tables:key -->`` and ``<!-- /paper_tables:key -->`` in RESULTS.md
    (appended at the end the first time)."""
    start, end = f"<!-- paper_tables:{key} -->", f"<!-- /paper_tables:{key} -->"
    md = RESULTS_MD.read_text()
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in md and end in md:
        md = md[:md.index(start)] + block + md[md.index(end) + len(end):]
    else:
        md = md.rstrip() + "\n\n" + block + "\n"
    RESULTS_MD.write_text(md)


def results_section(rep) -> str:
    return f"""## Test protocol x training scale in miniature (`bench/paper_tables.py`, issue 14), {rep['date']}

Tables 3-6 at 1/7 scale. VGG-A, conv width 1/4, FC-{rep['fc_width']}, {rep['input_size']}x{rep['input_size']}
input, He init, SGD (momentum 0.9, weight decay 5e-4, lr /10 after {rep['patience']} epochs without validation
gain), batch {rep['batch']}, on {rep['train_images']} `shapes` training images drawn at
{rep['native_side']}x{rep['native_side']} (objects' size varies 3.4x); {rep['test_images']} test images. As in the
paper (Sect. 3.1, multi-scale nets fine-tuned from a single-scale one): stage 1 trains one net at fixed
S = 40 for {rep['epochs']} epochs (lr {rep['lr']}); stage 2 starts both nets from its weights for
{rep['fine_tune_epochs']} more epochs at lr {rep['fine_tune_lr']}, "fixed" at S = 40 and "jittered" with S drawn
from [40, 80]; then a random 32x32 crop and flip. Best validation top-1 error (centre crop at Q = 40 /
60): fixed {100 * rep['best_val_top1_err']['fixed']:.1f}%, jittered {100 * rep['best_val_top1_err']['jittered']:.1f}%.
Every method averages the image and its mirror image; multi-crop is
the 5x5 grid (50 crops per scale); "seconds" is the time spent computing the posteriors a row averages.
{rep['machine']}, {rep['blas_kernel']}; run under the shared lock. Took **{rep['total_seconds'] / 60:.1f} min**
(training {rep['train_seconds'] / 60:.1f}, testing {rep['test_seconds'] / 60:.1f}).
`flock /work/.heavy.lock .venv/bin/python bench/paper_tables.py`; numbers in `bench/paper_tables.json`.

{table(rep['rows'])}

![top-1 error per test method and training scale](../figures/paper_tables.png)
"""


# --- dense vs 50 crops for a full-size VGG-D --------------------------------------------------------


def conv_flops(layers, x) -> float:
    """FLOPs (2 per multiply-add) of the conv layers (fc layers as convs included) on input ``x``, from shapes."""
    from vggedu import nn

    flops = 0.0
    for layer in layers:
        y = layer.forward(x)
        if isinstance(layer, nn.Conv2d):
            KH, KW, C, F = layer.params["W"].shape
            flops += 2.0 * KH * KW * C * F * y.shape[0] * y.shape[1] * y.shape[2]
        elif isinstance(layer, nn.Linear):
            D, M = layer.params["W"].shape
            flops += 2.0 * D * M * y.shape[0]
        x = y
    return flops


def speed_one():
    """Time dense vs 50 crops at Q = 384 for VGG-D (224, random He weights) in this process's BLAS kernel."""
    from vggedu import build_vgg
    from vggedu.evaluate import dense_scores, multicrop_scores, rescaled, to_fully_convolutional

    model = build_vgg("D", num_classes=1000, input_size=224, init="he", seed=0)
    fcn = to_fully_convolutional(model)
    image = np.random.default_rng(0).standard_normal((384, 384, 3)).astype(np.float32)  # square: already Q = 384
    times = {}
    for name, fn in (("dense", lambda: dense_scores(fcn, image, 384)),
                     ("50 crops", lambda: multicrop_scores(model, image, 384))):
        fn()  # warm-up
        times[name] = min(_timed(fn) for _ in range(3))
    big = rescaled(image, 384)[None]
    crop = big[:, :224, :224]
    flops = {"dense": 2 * conv_flops(list(fcn), big), "50 crops": 50 * conv_flops(list(model.net), crop)}
    print(json.dumps({"kernel": blas_kernel(), "image": list(big.shape[1:3]), "seconds": times,
                      "gflops": {k: v / 1e9 for k, v in flops.items()}}))


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def speed(args):
    started = time.perf_counter()
    results = []
    for env_change in ({"OPENBLAS_CORETYPE": "Haswell"}, {"OPENBLAS_CORETYPE": None}):
        env = {k: v for k, v in os.environ.items() if k not in env_change}
        env.update({k: v for k, v in env_change.items() if v is not None})
        out = subprocess.run([sys.executable, __file__, "--speed-one"], env=env, capture_output=True, text=True,
                             check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    lines = ["| OpenBLAS kernel | image | dense (image + flip) | 50 crops of 224 | time ratio | dense GFLOPs | "
             "50-crop GFLOPs | FLOP ratio |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s, g = r["seconds"], r["gflops"]
        lines.append(f"| {r['kernel']} | {r['image'][0]}x{r['image'][1]} | {s['dense']:.2f} s | "
                     f"{s['50 crops']:.2f} s | "
                     f"{s['50 crops'] / s['dense']:.1f}x | {g['dense']:.0f} | {g['50 crops']:.0f} | "
                     f"{g['50 crops'] / g['dense']:.1f}x |")
    date = time.strftime("%Y-%m-%d %H:%M", time.gmtime()) + " UTC"
    text = f"""## Dense evaluation vs 50 crops, VGG-D at Q = 384 (`bench/paper_tables.py --speed`), {date}

Sect. 3.2's argument for dense evaluation, measured: a full-size VGG-D (224 input, FC-4096, random He
weights, float32) on one 384x384 image (Q = 384). Dense: the whole image and its mirror image
through the fully convolutional net (`dense_scores`, score map 6x6); multi-crop: the
5x5 grid of 224x224 crops and their mirror images (`multicrop_scores`, 50 forward passes, run 10 at a
time). Best of 3 after a warm-up; FLOPs counted from the layer shapes (2 per multiply-add). The crops
overlap, so they redo most of the work the dense pass shares. {describe_machine()}, default BLAS
threads, under the shared lock; took {time.perf_counter() - started:.0f} s.

""" + "\n".join(lines)
    print("\n" + "\n".join(lines))
    if not args.no_write:
        write_section("speed", text)
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.speed_one:
        return speed_one() or 0
    if args.speed:
        return speed(args)
    return experiment(args)


if __name__ == "__main__":
    sys.exit(main())
