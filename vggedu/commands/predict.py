"""``vggedu predict IMAGE... --weights FILE``: the top-k ImageNet classes of photos under released VGG weights.

``FILE`` is a released weight file (MatConvNet ``.mat``, Caffe ``.caffemodel``, Keras ``.h5``,
torchvision ``.pth`` or ``.safetensors``; see ``vggedu.pretrained``) or a vggedu checkpoint ``.npz``.
Each image is rescaled isotropically to the scale Q (default 256 for a 224 net) and classified from
its centre crop (``--method center``), or densely, whole image and its flip (``--method dense``,
Sect. 3.2; lesson 07); several ``--scales`` average the posteriors. Lesson 09.
"""

from __future__ import annotations

import json


def register(subparsers):
    p = subparsers.add_parser(
        "predict", help="top-k classes of images under released VGG weights (or a checkpoint)",
        description="Classify images with a released VGG-16/19 weight file (MatConvNet, Caffe, Keras, torchvision, "
        "safetensors) or a vggedu checkpoint, and print each image's top-k classes with their probabilities.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG/PNG files")
    p.add_argument("--weights", required=True, metavar="FILE", help="weight file or vggedu checkpoint (.npz)")
    p.add_argument("--format", help="matconvnet, caffe, keras, torchvision or safetensors (default: detected)")
    p.add_argument("--prototxt", metavar="FILE", help="Caffe deploy file to check a .caffemodel against")
    p.add_argument("--top", type=int, default=5, metavar="K", help="classes per image (default 5)")
    p.add_argument("--method", choices=("center", "dense"), default="center",
                   help="centre crop (default) or dense evaluation of the whole image and its flip")
    p.add_argument("--scales", type=int, nargs="+", metavar="Q",
                   help="smallest image side(s) to rescale to; posteriors averaged (default 256 for a 224 net)")
    p.add_argument("--device", choices=("cpu", "gpu"), help="default: $VGGEDU_DEVICE or cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.set_defaults(func=run)
    return p


def load_weights(path, fmt=None, prototxt=None, device=None):
    """A VGG with preprocessing from a released weight file or a vggedu checkpoint (``.npz``)."""
    from pathlib import Path

    from vggedu.backend import default_device

    if Path(path).suffix.lower() == ".npz" and fmt is None:
        from vggedu.checkpoint import load_checkpoint

        model = load_checkpoint(path).model
    else:
        from vggedu.pretrained import load

        try:
            model = load(path, fmt, prototxt)
        except ImportError as err:  # a reader from the pretrained extra is missing: say so, as a usage error
            raise ValueError(str(err)) from None
    return model.to(device or default_device()).eval()


def run(args) -> int:
    from vggedu.data.datasets import read_image
    from vggedu.pretrained import classify, top_k

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    model = load_weights(args.weights, args.format, args.prototxt, args.device)
    if not args.json:
        print(f"VGG-{model.config} from {args.weights}: input {model.preprocessing.describe()}; "
              f"{args.method} evaluation at Q = {args.scales or 'default'}")
    for path in args.images:
        probs = classify(model, read_image(path), args.method, args.scales)
        top = top_k(probs, min(args.top, model.num_classes), model.class_names)
        if args.json:
            print(json.dumps({"image": str(path), "top": [{"class": i, "prob": p, "name": n} for i, p, n in top]}))
        else:
            print(path)
            for i, p, n in top:
                print(f"  {p:7.4f}  {i:4d}  {n if n is not None else ''}".rstrip())
    return 0
