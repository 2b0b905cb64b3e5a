"""Very deep features without downloads (Appendix B, small): a VGG trained here on half of Fashion-MNIST's classes,
its features on the other half, a linear SVM against raw pixels and a randomly initialised net of the same shape.

The released nets were trained on ImageNet and their features used on VOC and Caltech. No weight file can
be downloaded here, so the experiment is rebuilt at a size 2 cores can run: VGG-16 (config D, conv width
1/4, FC-256, 32x32 input) is trained with vggedu's trainer on Fashion-MNIST's classes 0-4 (T-shirt/top,
Trouser, Pullover, Dress, Coat); fc8 is dropped and Appendix B's descriptor (dense application at
Q = 32, 48, 64, global average of relu7, flip averaging, scales averaged, L2 normalisation) is computed
for classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot), which the net never saw. A linear SVM trained
on n images per class (C picked by 3-fold cross-validation on those images) is tested on all 5000 test
images of those classes. Baselines: the raw pixels (L2-normalised), and the same pipeline on the same
architecture with random (He) weights; and, for comparison, the trained net's pool5 instead of relu7.

    python bench/transfer.py            # about 10-15 minutes on 2 cores (run it under flock /work/.heavy.lock)
    python bench/transfer.py --quick    # a smoke test: 3000 training images, 2 epochs, a 1000-image test set
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "VGGEDU_DATA" not in os.environ and (SHARED_DATA / "fashion-mnist").is_dir():
    os.environ["VGGEDU_DATA"] = str(SHARED_DATA)
from common import blas_kernel, describe_machine  # noqa: E402

from vggedu import build_vgg, load_checkpoint  # noqa: E402
from vggedu.features import class_split, extract, per_class, pixel_features, svm_accuracy  # noqa: E402
from vggedu.rundata import load_split  # noqa: E402
from vggedu.train import TrainConfig, Trainer  # noqa: E402

SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3000 training images, 2 epochs, 1000 test images")
    p.add_argument("--config", default="D")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--fc-width", type=int, default=256)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--no-augment", action="store_true", help="no scale jittering, crops and flips in training")
    p.add_argument("--scales", type=int, nargs="+", default=[32, 48, 64])
    p.add_argument("--per-class", type=int, nargs="+", default=[10, 100, 1000], help="SVM training images per class")
    p.add_argument("--C", type=float, default=None, help="SVM C (default: 3-fold cross-validation on the training set)")
    p.add_argument("--out", default="runs/transfer")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.epochs, args.per_class, args.no_augment = 2, [10, 100], True
    started = time.perf_counter()
    train = load_split("fashion-mnist", "train", 32, 5000, None, 0)
    val = load_split("fashion-mnist", "val", 32, 5000, None, 0)
    test = load_split("fashion-mnist", "test", 32, 5000, None, 0)
    source_train, source_val = class_split(train, SOURCE), class_split(val, SOURCE)
    target_train, target_test = class_split(train, TARGET), class_split(test, TARGET)
    if args.quick:
        source_train = source_train.subset(slice(0, 3000))
        source_val = source_val.subset(slice(0, 1000))
        target_test = target_test.subset(per_class(target_test.labels, 200))
    print(f"source: {source_train.classes} ({len(source_train)} train, {len(source_val)} val); "
          f"target: {target_train.classes}")

    # 1. the source net, trained with vggedu's trainer (the paper's recipe, He init; scale jitter and flips
    #    unless --no-augment)
    cfg = TrainConfig(config=args.config, width=args.width, fc_width=args.fc_width, init="he", data="fashion-mnist",
                      size=32, epochs=args.epochs, batch_size=args.batch, lr=args.lr, lr_patience=0,
                      augment=not args.no_augment, out=str(Path(args.out) / "source"), progress=False)
    t0 = time.perf_counter()
    result = Trainer(cfg, data=(source_train, source_val)).fit()
    train_seconds = time.perf_counter() - t0
    trained = load_checkpoint(Path(cfg.out) / "best.npz").model
    source_test = class_split(test, SOURCE)
    source_acc = float((trained.predict(trained.preprocess(source_test.images)) == source_test.labels).mean())
    print(f"trained VGG-{args.config} on the source classes in {train_seconds:.0f} s: test accuracy {source_acc:.4f}")
    random_net = build_vgg(args.config, num_classes=len(SOURCE), input_size=32, width=args.width,
                           fc_width=args.fc_width, in_channels=1, init="he", seed=1)
    random_net.preprocessing = trained.preprocessing  # the same input, only the weights differ

    # 2. descriptors of the target classes: the largest SVM training set once, the smaller ones are subsets
    pool = per_class(target_train.labels, max(args.per_class), seed=0)
    svm_train = target_train.subset(pool)
    reps, seconds = {}, {}
    net, qs = f"VGG-{args.config}", ", ".join(map(str, args.scales))
    for name, fn in (("raw pixels (L2-normalised)", pixel_features),
                     (f"random {net}, Q = {qs}", lambda ims: extract(random_net, ims, args.scales)),
                     (f"trained {net}, Q = 32", lambda ims: extract(trained, ims, [32])),
                     (f"trained {net}, Q = {qs}", lambda ims: extract(trained, ims, args.scales)),
                     (f"trained {net}, Q = {qs}, pool5 instead of relu7",
                      lambda ims: extract(trained, ims, args.scales, layer="pool5"))):
        t0 = time.perf_counter()
        reps[name] = (fn(svm_train.images), fn(target_test.images))
        seconds[name] = time.perf_counter() - t0
        print(f"{name}: {reps[name][0].shape[1]}-d, {seconds[name]:.0f} s")

    # 3. linear SVMs on n images per class, tested on every test image of the target classes
    rows = []
    for name, (tr, te) in reps.items():
        accs = {}
        for n in args.per_class:
            pick = per_class(svm_train.labels, n, seed=1)
            accs[n] = svm_accuracy(tr[pick], svm_train.labels[pick], te, target_test.labels, C=args.C)
        rows.append({"features": name, "dim": int(tr.shape[1]), "accuracy": accs, "seconds": round(seconds[name], 1)})
    header = "| features | dim | " + " | ".join(f"SVM on {n}/class" for n in args.per_class) + " |"
    print("\n" + header + "\n|" + "---|" * (2 + len(args.per_class)))
    for r in rows:
        print(f"| {r['features']} | {r['dim']} | " + " | ".join(f"{r['accuracy'][n]:.4f}" for n in args.per_class)
              + " |")
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": describe_machine(), "blas_kernel": blas_kernel(),
              "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"), "C": args.C,
              "quick": args.quick, "config": args.config, "width": args.width, "fc_width": args.fc_width,
              "epochs": args.epochs, "source_train_images": len(source_train), "source_test_accuracy": source_acc,
              "best_val_top1_err": result.best_val_top1_err,
              "train_seconds": round(train_seconds, 1), "target_test_images": len(target_test), "rows": rows,
              "total_seconds": round(time.perf_counter() - started, 1)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(report, indent=1))
    print(f"\n{json.dumps({k: v for k, v in report.items() if k != 'rows'})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
