"""``vggedu transplant --from SRC.npz --to D --out DST.npz``: start a deeper net from a trained one (Sect. 3.1).

The destination has the source's width, input size and classes; the layers that are not copied
are initialised afresh (``--init``, default the paper's N(0, 0.01)). See ``vggedu.transplant``.
"""

from __future__ import annotations

from vggedu.checkpoint import load_checkpoint, save_checkpoint
from vggedu.configs import CONFIGS, canonical
from vggedu.models import build_vgg
from vggedu.transplant import transplant


def register(subparsers):
    p = subparsers.add_parser(
        "transplant",
        help="copy a trained net's layers into a deeper config (the paper's initialisation)",
        description="Build config --to with the source checkpoint's width, input size and classes, copy the "
        "paper's layers (conv1_1, conv2_1, conv3_1, conv3_2, fc6, fc7, fc8) or every matching layer from "
        "the source, initialise the rest randomly, and save a new checkpoint.",
    )
    p.add_argument("--from", dest="src", required=True, metavar="SRC.npz", help="checkpoint to copy from")
    p.add_argument("--to", dest="config", required=True, metavar="CONFIG", help=f"one of {', '.join(CONFIGS)}")
    p.add_argument("--out", required=True, metavar="DST.npz", help="checkpoint to write")
    p.add_argument("--layers", default="paper", choices=("paper", "matching"),
                   help="paper: the 4 conv + 3 FC layers the paper copied (default); matching: every "
                   "same-named layer of the same shape")
    p.add_argument("--init", default="paper", choices=("paper", "glorot", "he"),
                   help="initialiser of the layers not copied (default paper: N(0, 0.01))")
    p.add_argument("--seed", type=int, default=0, help="seed of that initialisation (default 0)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    config = canonical(args.config)
    source = load_checkpoint(args.src)
    spec = dict(source.spec, config=config)
    dst = build_vgg(**spec, init=args.init, seed=args.seed)
    report = transplant(source, dst, layers=args.layers)
    meta = {"transplant": report.to_dict(), "source": str(args.src), "init": args.init, "seed": args.seed}
    save_checkpoint(args.out, dst, meta=meta)
    print(report)
    print(f"saved {args.out}")
    return 0
