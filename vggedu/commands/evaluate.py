"""``vggedu evaluate``: top-1 and top-5 error of checkpoints under the paper's test protocol (Sect. 3.2).

    vggedu evaluate --checkpoint runs/A/best.npz                       # one centre crop at Q = input size
    vggedu evaluate --checkpoint runs/A/best.npz --method dense --scales 32,40,48
    vggedu evaluate --checkpoint F.npz --checkpoint J.npz --method dense,dense+multicrop --scales 40 --scales 35,40,45

Prints ONE table in the shape of the paper's Tables 3-6: one row per checkpoint, ``--method`` and
``--scales`` set (posteriors averaged over the set's Q), and with several checkpoints one more row per
method and set for their fusion (posteriors averaged over the nets). Methods: ``center`` (one centre
crop of the rescaled image), ``dense`` (the whole image through the net with its FC layers as
convolutions), ``multicrop`` (a 5x5 grid of crops), ``dense+multicrop`` (both averaged); each with the
mirror image unless ``--no-flip``. Columns: method, test scales Q, top-1 and top-5 error, images, and
the seconds spent computing that row's posteriors. The test images are loaded at the largest Q (shapes
are drawn at that size; other data resized once), then rescaled to each Q. See ``vggedu.evaluate``;
lesson 07.
"""

from __future__ import annotations

import json


def register(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="top-1/top-5 error of checkpoints: centre crop, dense, multi-crop, scales, fusion",
        description="Load one or more checkpoints (e.g. runs/A/best.npz), run them over the test split of --data "
        "(default: the dataset the first was trained on) with the paper's test protocol and print one table of "
        "top-1 and top-5 error per checkpoint, method and set of test scales (and their fusion).")
    p.add_argument("--checkpoint", required=True, action="append", metavar="PATH",
                   help="a .npz written by vggedu train; repeat to fuse several nets")
    p.add_argument("--data", help="shapes, fashion-mnist, cifar10 or folder:PATH (default: the training data)")
    p.add_argument("--split", default="test", choices=("test", "val", "train"), help="default test")
    p.add_argument("--method", action="append", metavar="M",
                   help="center, dense, multicrop or dense+multicrop; comma-separated or repeated (default center)")
    p.add_argument("--scales", action="append", metavar="Q,Q,...",
                   help="test scales (smallest image side) averaged in one row, e.g. 32,40,48; repeat for more rows "
                   "(default: the net's input size)")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="do not average with the mirror images")
    p.add_argument("--images", type=int, metavar="N", help="only the first N images of the split")
    p.add_argument("--batch", type=int, default=64, help="images per forward pass (default 64; multi-crop: /25)")
    p.add_argument("--device", choices=("cpu", "gpu"), help="default: $VGGEDU_DEVICE or cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object per row instead of the table")
    p.set_defaults(func=run)
    return p


def parse_methods(values) -> list[str]:
    from vggedu.evaluate import check_method

    methods = [m.strip() for v in (values or ["center"]) for m in v.split(",") if m.strip()]
    return [check_method(m) for m in dict.fromkeys(methods)]


def parse_scales(values, input_size: int) -> list[tuple[int, ...]]:
    """``["32,40,48", "40"]`` -> [(32, 40, 48), (40,)]; every Q checked against the net's input size."""
    from vggedu.evaluate import check_scales

    if not values:
        return [(input_size,)]
    sets = []
    for v in values:
        try:
            qs = [int(q) for q in v.replace(" ", ",").split(",") if q]
        except ValueError:
            raise ValueError(f"--scales {v!r}: expected whole numbers separated by commas, e.g. 32,40,48") from None
        sets.append(check_scales(qs, input_size))
    return sets


def format_table(rows: list[dict], net_header: str = "net", seconds_format: str = ".1f") -> str:
    """The rows as a Markdown table: net, method, test scales, top-1 and top-5 error (%), images, seconds."""
    lines = [f"| {net_header} | method | test scales Q | top-1 err (%) | top-5 err (%) | images | seconds |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['net']} | {r['method']} | {', '.join(map(str, r['scales']))} | "
                     f"{100 * r['top1_err']:.1f} | {100 * r['top5_err']:.1f} | {r['n']} | "
                     f"{r['seconds']:{seconds_format}} |")
    return "\n".join(lines)


def run(args) -> int:
    from vggedu.evaluate import PosteriorCache, check_fits, load_test_net, protocol_error
    from vggedu.rundata import load_split

    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {args.batch}")
    methods = parse_methods(args.method)
    nets = [load_test_net(path, args.device, args.data) for path in args.checkpoint]
    first = nets[0].model
    for net in nets[1:]:
        m = net.model
        if (m.input_size, m.num_classes, m.in_channels) != (first.input_size, first.num_classes, first.in_channels):
            raise ValueError(f"{net.name} (input {m.input_size}, {m.num_classes} classes) cannot be fused with "
                             f"{nets[0].name} (input {first.input_size}, {first.num_classes} classes)")
    scale_sets = parse_scales(args.scales, first.input_size)
    run_cfg = nets[0].train_config
    data = args.data or run_cfg.get("data")
    if data is None:
        raise ValueError(f"{args.checkpoint[0]} does not say which data it was trained on: pass --data")
    side = max(max(s) for s in scale_sets)
    dataset = load_split(data, args.split, side, run_cfg.get("holdout", 5000), args.images, run_cfg.get("data_seed", 0))
    for net in nets:
        check_fits(net.model, dataset, net.name, data)
    cache = PosteriorCache(dataset.images, flip=args.flip, batch_size=args.batch)
    groups = [[net] for net in nets] + ([nets] if len(nets) > 1 else [])
    rows = []
    for group in groups:
        name = group[0].name if len(group) == 1 else "fusion of " + " + ".join(n.name for n in group)
        for method in methods:
            for scales in scale_sets:
                r = protocol_error(group, dataset.labels, method, scales, cache)
                r.pop("probs")
                rows.append({"net": name, "config": "+".join(n.model.config for n in group), "method": method,
                             "scales": list(scales), "flip": args.flip, "data": data, "split": args.split, **r})
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(f"{data} {args.split}, {len(dataset)} images loaded at {side}x{side}; "
              f"{'image and mirror image averaged' if args.flip else 'no flips'}")
        print(format_table(rows))
    return 0
