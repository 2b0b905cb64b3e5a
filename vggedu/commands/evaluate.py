"""``vggedu evaluate --checkpoint PATH [--data NAME]``: top-1 and top-5 error on the test split, one centre crop.

The net sees what it saw in training: images at the checkpoint's input size, the training mean
subtracted and the same scale (both stored in the checkpoint). Sect. 3.2's dense and multi-crop
evaluation are not done here. See ``vggedu.metrics.evaluate_checkpoint``.
"""

from __future__ import annotations

import json


def register(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="top-1/top-5 error of a checkpoint on a test split (single centre crop)",
        description="Load a checkpoint (e.g. runs/A/best.npz), run it over the test split of --data (default: the "
        "dataset it was trained on) and print its top-1 and top-5 error.")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="a .npz written by vggedu train")
    p.add_argument("--data", help="shapes, fashion-mnist, cifar10 or folder:PATH (default: the training data)")
    p.add_argument("--split", default="test", choices=("test", "val", "train"), help="default test")
    p.add_argument("--images", type=int, metavar="N", help="only the first N images of the split")
    p.add_argument("--batch", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--device", choices=("cpu", "gpu"), help="default: $VGGEDU_DEVICE or cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from vggedu.metrics import evaluate_checkpoint

    r = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.batch, args.images, args.device)
    if args.json:
        print(json.dumps({k: r[k] for k in ("config", "data", "split", "n", "loss", "top1_err", "top5_err")}))
    else:
        print(f"VGG-{r['config']} {args.checkpoint} on {r['data']} {r['split']} ({r['n']} images, single centre "
              f"crop): top-1 error {100 * r['top1_err']:.2f}%, top-5 error {100 * r['top5_err']:.2f}%, "
              f"loss {r['loss']:.4f}")
    return 0
