"""The README's figures, drawn from the config table: ``python -m vggedu.figures`` (or ``make figures``).

Writes into ``figures/`` (``--out`` to change):

- ``receptive_field_growth.png``  receptive field after each weight layer, configs A to E
- ``params_per_config.png``       parameters of each config (Table 2), split into conv and FC
- ``layer_costs_D.png``           parameters and FLOPs of each weight layer of D (VGG-16)

Everything comes from ``vggedu.configs.layer_table``; no net is built. Lesson 01 draws the same
pictures with these functions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vggedu.configs import PAPER_CONFIGS, layer_table, weight_layers


def _plt():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    fig, ax = _plt().subplots(figsize=figsize)
    return fig, ax


def plot_receptive_fields(configs=PAPER_CONFIGS, input_size: int = 224, ax=None):
    """Receptive field (pixels) after each conv layer, one line per config (A-LRN is A's)."""
    fig, ax = _axes(ax, (7, 4.2))
    for config in configs:
        if config == "A-LRN":  # the same receptive fields as A
            continue
        convs = [r for r in layer_table(config, input_size=input_size) if r["kind"] == "conv"]
        ax.plot(range(1, len(convs) + 1), [r["receptive_field"] for r in convs], marker="o", ms=3,
                label=f"{config} ({len(convs)} conv)")
    ax.axhline(input_size, color="grey", ls=":", lw=1)
    ax.text(1, input_size * 1.02, f"input {input_size}x{input_size}", color="grey", fontsize=8)
    ax.set_xlabel("conv layer (in depth order)")
    ax.set_ylabel("receptive field (pixels)")
    ax.set_title("Receptive field after each conv layer\n(a 3x3 conv adds 2 x jump; a pool doubles the jump)",
                 fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_params_per_config(configs=PAPER_CONFIGS, ax=None):
    """Stacked bars: conv and FC parameters (millions) of each config at 224x224, 1000 classes."""
    fig, ax = _axes(ax, (6, 4))
    conv, fc = [], []
    for config in configs:
        rows = layer_table(config)
        conv.append(sum(r["params"] for r in rows if r["kind"] == "conv") / 1e6)
        fc.append(sum(r["params"] for r in rows if r["kind"] == "fc") / 1e6)
    ax.bar(configs, fc, label="fully connected (fc6-fc8)", color="tab:orange")
    ax.bar(configs, conv, bottom=fc, label="convolutions", color="tab:blue")
    for i, (a, b) in enumerate(zip(conv, fc)):
        ax.text(i, a + b + 2, f"{a + b:.0f}M", ha="center", fontsize=9)
    ax.set_ylabel("parameters (millions)")
    ax.set_ylim(0, max(c + f for c, f in zip(conv, fc)) * 1.15)
    ax.set_title("Parameters per config (Table 2): depth adds few, fc6 dominates")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_layer_costs(config: str = "D", input_size: int = 224, axes=None):
    """Two bar charts over the weight layers of ``config``: parameters and forward FLOPs per image."""
    if axes is None:
        fig, axes = _plt().subplots(2, 1, figsize=(9, 5.5), sharex=True)
    else:
        fig = axes[0].figure
    rows = weight_layers(layer_table(config, input_size=input_size))
    names = [r["name"] for r in rows]
    colours = ["tab:blue" if r["kind"] == "conv" else "tab:orange" for r in rows]
    axes[0].bar(names, [r["params"] / 1e6 for r in rows], color=colours)
    axes[0].set_ylabel("parameters (M)")
    axes[0].set_title(f"VGG-{config} at {input_size}x{input_size}: parameters live in fc6, compute in the convs")
    axes[1].bar(names, [r["flops"] / 1e9 for r in rows], color=colours)
    axes[1].set_ylabel("GFLOPs per image")
    axes[1].tick_params(axis="x", rotation=70)
    fig.tight_layout()
    return fig


FIGURES = {
    "receptive_field_growth.png": plot_receptive_fields,
    "params_per_config.png": plot_params_per_config,
    "layer_costs_D.png": plot_layer_costs,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Regenerate the README's figures from the config table.")
    p.add_argument("--out", type=Path, default=Path("figures"), help="output folder (default figures/)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    for name, draw in FIGURES.items():
        fig = draw()
        fig.tight_layout()
        fig.savefig(args.out / name, dpi=110, metadata={"Software": None})
        plt.close(fig)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
