"""``vggedu features --weights FILE --data NAME --out feats.npz``: very deep features of a dataset (Appendix B).

Runs ``vggedu.features.extract`` (fc8 removed, dense application at each scale, global average,
flip averaging, scales averaged or stacked, L2 normalisation) over one or more splits of a dataset
and saves ``<split>_features`` (N, D), ``<split>_labels`` (N,) and the settings to an ``.npz``.
``--svm`` then trains scikit-learn's linear SVM on the first split and prints its accuracy on the
others. Lesson 09.
"""

from __future__ import annotations

import json
import time


def register(subparsers):
    p = subparsers.add_parser(
        "features", help="very deep features (fc8 removed, dense, multi-scale) of a dataset, optionally a linear SVM",
        description="Extract Appendix B's very deep features from a dataset with released VGG weights or a vggedu "
        "checkpoint, save them to an .npz, and optionally train and test a linear SVM on them.")
    p.add_argument("--weights", required=True, metavar="FILE", help="weight file or vggedu checkpoint (.npz)")
    p.add_argument("--format", help="matconvnet, caffe, keras, torchvision or safetensors (default: detected)")
    p.add_argument("--data", required=True,
                   help="shapes, fashion-mnist, cifar10, imagenet-samples or folder:PATH (see vggedu.data)")
    p.add_argument("--splits", nargs="+", default=["train", "test"], metavar="SPLIT",
                   help="splits to describe (default: train test); --svm trains on the first")
    p.add_argument("--size", type=int, help="load the images at this size (fashion-mnist 32: padded as in training)")
    p.add_argument("--classes", type=int, nargs="+", metavar="K", help="keep only these class indices")
    p.add_argument("--images", type=int, metavar="N", help="at most N images per split (the first ones)")
    p.add_argument("--scales", type=int, nargs="+", metavar="Q",
                   help="smaller image side(s) Q (default 256 384 512 for a 224 net: the paper's)")
    p.add_argument("--combine", choices=("average", "stack"), default="average", help="across scales (default average)")
    p.add_argument("--no-flip", action="store_true", help="do not average with the flipped image")
    p.add_argument("--out", required=True, metavar="FILE", help="the .npz to write")
    p.add_argument("--svm", action="store_true", help="train a linear SVM on the first split, test on the others")
    p.add_argument("--C", type=float, default=None,
                   help="the SVM's regularisation constant (default: 3-fold cross-validation on the first split)")
    p.add_argument("--device", choices=("cpu", "gpu"), help="default: $VGGEDU_DEVICE or cpu")
    p.set_defaults(func=run)
    return p


def default_scales(input_size: int) -> list:
    """Appendix B's Q = 256, 384, 512 for a 224 net, scaled for other input sizes."""
    return [int(round(input_size * q / 224)) for q in (256, 384, 512)]


def load_split(data, split, size=None, classes=None, n=None):
    """(images, labels) of one split, filtered to ``classes`` (original indices kept) and cut to ``n``."""
    import numpy as np

    from vggedu.data import load_dataset

    ds = load_dataset(data, split, size=size)
    index = np.arange(len(ds))
    if classes:
        index = index[np.isin(ds.labels, classes)]
    if n is not None:
        index = index[:n]
    return [ds.images[i] for i in index] if not hasattr(ds.images, "shape") else ds.images[index], ds.labels[index]


def run(args) -> int:
    import os
    from pathlib import Path

    import numpy as np

    from vggedu.commands.predict import load_weights
    from vggedu.features import extract, svm_accuracy

    model = load_weights(args.weights, args.format, None, args.device)
    scales = args.scales or default_scales(model.input_size)
    out, report = {}, {"weights": str(args.weights), "data": args.data, "scales": scales, "combine": args.combine}
    for split in args.splits:
        images, labels = load_split(args.data, split, args.size, args.classes, args.images)
        if len(labels) == 0:
            raise ValueError(f"{args.data} {split}: no images left (check --classes / --images)")
        start = time.perf_counter()
        feats = extract(model, images, scales, flip=not args.no_flip, combine=args.combine)
        seconds = time.perf_counter() - start
        out[f"{split}_features"], out[f"{split}_labels"] = feats, np.asarray(labels)
        print(f"{split}: {len(labels)} images -> features {feats.shape} in {seconds:.1f} s")
    target = Path(args.out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp.npz")
    np.savez(tmp, scales=np.asarray(scales), combine=np.asarray(args.combine), **out)
    os.replace(tmp, target)
    print(f"saved {target}")
    if args.svm:
        if len(args.splits) < 2:
            raise ValueError("--svm needs two splits at least: it trains on the first and tests on the others")
        first = args.splits[0]
        for split in args.splits[1:]:
            try:
                acc = svm_accuracy(out[f"{first}_features"], out[f"{first}_labels"], out[f"{split}_features"],
                                   out[f"{split}_labels"], C=args.C)
            except ImportError as err:
                raise ValueError(str(err)) from None
            report[f"{split}_accuracy"] = acc
            how = f"C={args.C:g}" if args.C is not None else "C cross-validated"
            print(f"linear SVM ({how}) trained on {first}, accuracy on {split}: {acc:.4f}")
        print(json.dumps(report))
    return 0
