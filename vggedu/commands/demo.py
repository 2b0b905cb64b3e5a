"""``vggedu demo`` (``make demo``): the paper's training story, small: train VGG-A, transplant it into VGG-D, train D.

On the embedded ``shapes`` data at 32x32, with nets a quarter of the paper's width (FC-1024 instead
of FC-4096), about 5 minutes on 2 CPU cores:

1. VGG-A (11 layers) from random weights. He initialisation, not the paper's N(0, 0.01): at a
   quarter width every layer has a quarter of the fan-in, so N(0, 0.01) shrinks the signal about
   twice as much per layer as in the paper's full-width net, and the narrow A sits at chance
   (lesson 06 shows it). He's std sqrt(2 / fan_in) keeps the signal's scale through the ReLUs.
2. Transplant (Sect. 3.1): A's conv1_1, conv2_1, conv3_1, conv3_2, fc6, fc7 and fc8 go into the
   same-named layers of VGG-D (16 layers); D's other nine conv layers start from He's random weights.
3. VGG-D trained on from there, same learning rate for every layer, as in the paper; and, for a fair
   comparison, VGG-A trained on for the same number of epochs (its run simply continues). Both nets
   have then had the same number of epochs: D's first ones were A's.

Then both nets' best checkpoints are evaluated on the test split and the curves are drawn:
``runs/demo/A/curves.png``, ``runs/demo/D/curves.png`` and both side by side in ``runs/demo/curves.png``.
"""

from __future__ import annotations

import time

from vggedu.commands import warnings_as_lines

# (the net, the data and the schedule of each stage; measured to fit ~5 minutes on 2 cores)
NET = dict(width=0.25, fc_width=1024, size=32, data="shapes")
STAGE_A = dict(config="A", init="he", train_images=10000, val_images=1000, epochs=16, batch_size=32, lr_patience=1)
STAGE_DEEP = dict(train_images=10000, val_images=1000, epochs=7, batch_size=32, lr_patience=1)
# --quick: the same three steps on miniature nets, in seconds (tests)
QUICK = dict(NET=dict(width=0.0625, fc_width=32, size=32, data="shapes"),
             A=dict(STAGE_A, train_images=128, val_images=64, epochs=1, batch_size=32),
             DEEP=dict(STAGE_DEEP, train_images=128, val_images=64, epochs=1, batch_size=32))


def register(subparsers):
    p = subparsers.add_parser(
        "demo", help="the main job: train VGG-A, transplant it into VGG-D, train D (~5 min on 2 cores)",
        description="Train a narrow VGG-A on the embedded shapes data, transplant its weights into a deeper "
        "config as the paper did, train that, and print both nets' test error and where the curves are.")
    p.add_argument("--out", default="runs/demo", help="where the runs go (default runs/demo)")
    p.add_argument("--deep", default="D", choices=("B", "C", "D", "E"), help="the deeper config (default D)")
    p.add_argument("--quick", action="store_true", help="miniature nets and data: seconds, for tests")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--device", choices=("cpu", "gpu"), help="every step's device (default: $VGGEDU_DEVICE or cpu)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from vggedu.checkpoint import load_checkpoint, save_checkpoint
    from vggedu.evaluate import evaluate_checkpoint
    from vggedu.metrics import compare_curves
    from vggedu.models import build_vgg
    from vggedu.train import TrainConfig, Trainer, check_writable
    from vggedu.transplant import transplant

    out = check_writable(args.out)
    net, stage_a, stage_deep = (QUICK["NET"], QUICK["A"], QUICK["DEEP"]) if args.quick else (NET, STAGE_A, STAGE_DEEP)
    common = dict(progress=args.progress, device=args.device)
    t0 = time.perf_counter()
    with warnings_as_lines():
        print(f"[1/3] VGG-A (11 weight layers), width {net['width']:g}, FC-{net['fc_width']}, on shapes "
              f"{net['size']}x{net['size']} ({stage_a['train_images']} training images), He initialisation",
              flush=True)
        epochs_a, extra = stage_a["epochs"], stage_deep["epochs"]
        cfg_a = TrainConfig(**net, **{**stage_a, "epochs": epochs_a + extra}, out=str(out / "A"), **common)
        trainer = Trainer(cfg_a)
        trainer.fit(epochs_a)
        (out / f"A-epoch{epochs_a}.npz").write_bytes((out / "A" / "best.npz").read_bytes())
        best_a = trainer.best_val_err

        print(f"[2/3] transplant: VGG-A's first four conv layers and three FC layers into VGG-{args.deep}",
              flush=True)
        src = load_checkpoint(out / f"A-epoch{epochs_a}.npz")
        deep = build_vgg(args.deep, num_classes=src.spec["num_classes"], input_size=net["size"], width=net["width"],
                         fc_width=net["fc_width"], in_channels=src.spec["in_channels"], init="he", seed=1)
        report = transplant(src, deep, layers="paper")
        init_path = save_checkpoint(out / f"{args.deep}-init.npz", deep, meta={"transplant": report.to_dict()})
        print(report, flush=True)

        print(f"[3/3] VGG-{args.deep} ({len([r for r in deep.summary() if r['kind'] in ('conv', 'fc')])} weight "
              f"layers) trained on from the transplant for {extra} epochs, then VGG-A for the same {extra} more "
              "epochs (equal budgets)", flush=True)
        cfg_d = TrainConfig(**net, **stage_deep, config=args.deep, init="he", init_from=str(init_path),
                            out=str(out / args.deep), **common)
        Trainer(cfg_d).fit()
        trainer.fit()  # A's own run, on to epochs_a + extra

    results = {name: evaluate_checkpoint(out / name / "best.npz", device=args.device) for name in ("A", args.deep)}
    compare_curves({f"VGG-{name}": out / name for name in results}, out / "curves.png",
                   title=f"VGG-A ({epochs_a}+{extra} epochs) and VGG-{args.deep} from A's epoch-{epochs_a} transplant "
                   f"(+{extra}), shapes {net['size']}x{net['size']}",
                   num_classes=src.spec["num_classes"], offsets={f"VGG-{args.deep}": epochs_a})
    minutes = (time.perf_counter() - t0) / 60
    print(f"\nTest error on shapes ({results['A']['n']} test images, one centre crop), after {minutes:.1f} minutes; "
          f"both nets trained {epochs_a + extra} epochs (D's first {epochs_a} as A), best checkpoint by validation:")
    for name, r in results.items():
        print(f"  VGG-{name:<2} top-1 {100 * r['top1_err']:5.1f}%   top-5 {100 * r['top5_err']:5.1f}%   "
              f"curves: {out / name / 'curves.png'}")
    print(f"  (VGG-A after its first {epochs_a} epochs, when it was transplanted: validation top-1 "
          f"{100 * best_a:.1f}%)")
    print(f"Both side by side: {out / 'curves.png'}. Next: the lessons in notebooks/ (05 trains A, 06 transplants).")
    return 0

