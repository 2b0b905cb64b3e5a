"""``vggedu info CONFIG``: a config's layers with shapes, parameters, FLOPs and receptive fields.

Computed from the table (``vggedu.configs.layer_table``): nothing is allocated, so even E at
224x224 answers at once. Lesson 01 explains every column.
"""

from __future__ import annotations

import json

from vggedu.configs import CONFIGS, canonical, format_table, layer_table, receptive_field


def register(subparsers):
    p = subparsers.add_parser(
        "info",
        help="print a config's layers: shapes, parameters, FLOPs, receptive fields",
        description="Print the summary of one VGG config (Table 1): per layer its output shape, parameters, "
        "FLOPs (2 x multiply-adds, conv and FC only), receptive field and jump, with totals.",
    )
    p.add_argument("config", help=f"one of {', '.join(CONFIGS)} (case-insensitive)")
    p.add_argument("--size", type=int, default=224, help="input height = width in pixels (default 224)")
    p.add_argument("--classes", type=int, default=1000, help="number of classes (default 1000)")
    p.add_argument("--width", type=float, default=1.0, help="multiplier on the conv channels (default 1)")
    p.add_argument("--fc-width", type=int, default=None, help="units in fc6 and fc7 (default 4096; 32 for tiny)")
    p.add_argument("--all", action="store_true", help="also list the ReLU, dropout and flatten layers")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    config = canonical(args.config)
    rows = layer_table(config, num_classes=args.classes, input_size=args.size, width=args.width,
                       fc_width=args.fc_width)
    params = sum(r["params"] for r in rows)
    flops = sum(r["flops"] for r in rows)
    rf = receptive_field(rows)
    if args.json:
        print(json.dumps({
            "config": config, "input_size": args.size, "num_classes": args.classes, "width": args.width,
            "params": params, "flops": flops, "receptive_field": rf,
            "layers": [dict(r, output_shape=list(r["output_shape"])) for r in rows],
        }, indent=1))
        return 0
    print(f"VGG-{config}: input {args.size}x{args.size}x3, {args.classes} classes, width {args.width:g}")
    print(format_table(rows, all_layers=args.all))
    print(f"parameters {params:,} ({params / 1e6:.1f}M); forward {flops / 1e9:.2f} GFLOPs per image; "
          f"receptive field of pool5 {rf}x{rf} pixels")
    return 0
