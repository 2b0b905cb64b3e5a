"""Table 1 of the paper (configs A, A-LRN, B, C, D, E, plus ``tiny``) and the arithmetic derived from it.

Taught in ``notebooks/01_receptive_fields_and_parameters.ipynb``; built into nets by ``vggedu.models``.

The table is written in the paper's own words: ``"conv3-64"`` is a 3x3 convolution with 64 output
channels (stride 1, padding 1, so the resolution is kept), ``"conv1-256"`` one of config C's 1x1
convolutions, ``"LRN"`` local response normalisation (A-LRN only), ``"maxpool"`` a 2x2 max-pool with
stride 2. Every config ends with the same head, FC-4096, FC-4096, FC-``num_classes``, soft-max
(Sect. 2.1). Everything else is *derived* from the table and three knobs: the input size, the number
of classes and a ``width`` multiplier on the conv channels. Nothing below types in a layer size:
fc6's fan-in is the size of the last max-pool's output, computed by walking the table.

``layer_table(config, ...)`` walks the table and returns one row per layer of the built net (the
rows ``VGG.summary()`` returns), with, per image:

  output_shape     (H, W, C) after a conv/pool layer, (M,) after a fully connected one
  params           KH*KW*C*F + F for a conv, D*M + M for a fully connected layer
  flops            2 x multiply-adds: 2*OH*OW*KH*KW*C*F for a conv, 2*D*M for a fully connected
                   layer; biases, ReLU, LRN, pooling and dropout are not counted
  receptive_field  side of the input window one output unit sees: r_out = r_in + (K - 1) * j_in
  jump             distance in input pixels between neighbouring units: j_out = j_in * S

fc6 is treated as the KxK convolution it becomes in the paper's dense evaluation (Sect. 3.2, K the
side of the last max-pool output, 7 at 224x224), so its receptive field continues the recursion and
may exceed the image: the excess falls on padding. fc7 and fc8 are 1x1 convs and change nothing.
"""

from __future__ import annotations

import math
import numbers
import re

# Table 1 (Sect. 2.1). Block 5 of every config ends with the fifth max-pool; the head follows.
CONFIGS: dict[str, list[str]] = {
    "A": [
        "conv3-64", "maxpool",
        "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
    ],
    "A-LRN": [
        "conv3-64", "LRN", "maxpool",
        "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
    ],
    "B": [
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
    ],
    "C": [
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "conv1-256", "maxpool",
        "conv3-512", "conv3-512", "conv1-512", "maxpool",
        "conv3-512", "conv3-512", "conv1-512", "maxpool",
    ],
    "D": [
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "maxpool",
    ],
    "E": [
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "conv3-512", "maxpool",
    ],
    # Not in the paper: a miniature for tests and quick mode only. Five max-pools like the real
    # configs, and one of each special layer (LRN, a 1x1 conv) so tests exercise every code path.
    "tiny": [
        "conv3-8", "LRN", "maxpool",
        "conv3-16", "maxpool",
        "conv3-16", "conv1-16", "maxpool",
        "conv3-32", "maxpool",
        "conv3-32", "maxpool",
    ],
}
PAPER_CONFIGS = ("A", "A-LRN", "B", "C", "D", "E")
FC_WIDTH = {name: 4096 for name in PAPER_CONFIGS} | {"tiny": 32}  # FC-4096 for the paper's nets
DEPTH = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}  # weight layers, Table 1's header
LRN_CONSTANTS = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)  # AlexNet's, as the paper says

_CONV = re.compile(r"conv(\d+)-(\d+)$")


def canonical(config: str) -> str:
    """The table's spelling of ``config`` (case-insensitive: ``"a-lrn"`` -> ``"A-LRN"``)."""
    if isinstance(config, str):
        for name in CONFIGS:
            if name.lower() == config.strip().lower():
                return name
    raise ValueError(f"unknown VGG config {config!r}: expected one of {', '.join(CONFIGS)}")


def scaled_channels(channels: int, width: float) -> int:
    """Conv channels after the width multiplier: ``round(channels * width)``, at least 1."""
    return max(1, int(round(channels * width)))


def check_knobs(num_classes, input_size, width, fc_width=None, in_channels=3):
    """Raise ValueError/TypeError for sizes a VGG cannot have (named in the message)."""
    def positive_int(value):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1

    for name, value in (("num_classes", num_classes), ("input_size", input_size), ("in_channels", in_channels)):
        if not positive_int(value):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if fc_width is not None and not positive_int(fc_width):
        raise ValueError(f"fc_width must be a positive int, got {fc_width!r}")
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a positive number, got {width!r}")


def layer_table(config: str, num_classes: int = 1000, input_size: int = 224, width: float = 1.0,
                fc_width: int | None = None, in_channels: int = 3, dropout: float = 0.5) -> list[dict]:
    """One row per layer of the net ``build_vgg`` makes, computed from the table (nothing allocated).

    Row keys: ``name`` (the paper's: conv3_2, pool3, fc6, ...), ``kind`` (conv, relu, lrn, maxpool,
    flatten, fc, dropout), ``kernel``, ``stride``, ``pad`` (None where they do not apply),
    ``in_channels``/``out_channels`` (conv and LRN; D and M for fc), ``output_shape``, ``params``,
    ``flops``, ``receptive_field``, ``jump`` (see the module docstring). ``dropout`` rows appear
    only when ``dropout > 0``. ``fc_width`` None means the table's (4096; 32 for ``tiny``).
    """
    config = canonical(config)
    fc_width = FC_WIDTH[config] if fc_width is None else fc_width
    check_knobs(num_classes, input_size, width, fc_width, in_channels)
    num_classes, input_size, fc_width, in_channels = int(num_classes), int(input_size), int(fc_width), int(in_channels)
    H = W = input_size
    C = in_channels
    rf, jump = 1, 1
    block, index = 1, 0
    rows = []

    def add(name, kind, out_shape, kernel=None, stride=None, pad=None, c_in=None, c_out=None, params=0, flops=0):
        rows.append(dict(name=name, kind=kind, kernel=kernel, stride=stride, pad=pad, in_channels=c_in,
                         out_channels=c_out, output_shape=tuple(out_shape), params=params, flops=flops,
                         receptive_field=rf, jump=jump))

    for entry in CONFIGS[config]:
        conv = _CONV.match(entry)
        if conv:
            K, F = int(conv.group(1)), scaled_channels(int(conv.group(2)), width)
            index += 1
            name = f"conv{block}_{index}"
            rf += (K - 1) * jump  # stride 1 and padding K // 2: the size and the jump stay
            add(name, "conv", (H, W, F), K, 1, K // 2, C, F, K * K * C * F + F, 2 * H * W * K * K * C * F)
            add(f"relu{block}_{index}", "relu", (H, W, F))
            C = F
        elif entry == "LRN":
            add(f"lrn{block}", "lrn", (H, W, C), c_in=C, c_out=C)
        elif entry == "maxpool":
            if H < 2 or W < 2:
                raise ValueError(
                    f"input_size {input_size} is too small for config {config}: pool{block} gets a {H}x{W} input "
                    f"(five 2x2 max-pools need input_size >= 32)"
                )
            H, W = H // 2, W // 2
            rf += jump
            jump *= 2
            add(f"pool{block}", "maxpool", (H, W, C), 2, 2, 0)
            block, index = block + 1, 0
        else:  # pragma: no cover - the table is fixed
            raise ValueError(f"config {config}: unknown table entry {entry!r}")

    add("flatten", "flatten", (H * W * C,))
    D = H * W * C  # fc6's fan-in, derived: the last max-pool's output, flattened in (h, w, c) order
    rf += (H - 1) * jump  # fc6 = an HxW conv over the pool5 map (dense evaluation, Sect. 3.2)
    for name, M, last in (("fc6", fc_width, False), ("fc7", fc_width, False), ("fc8", num_classes, True)):
        add(name, "fc", (M,), c_in=D, c_out=M, params=D * M + M, flops=2 * D * M)
        if not last:
            number = name[2:]
            add(f"relu{number}", "relu", (M,))
            if dropout > 0:
                add(f"drop{number}", "dropout", (M,))
        D = M
    return rows


def weight_layers(rows: list[dict]) -> list[dict]:
    """The rows with parameters (conv and fc), in order: the paper's "weight layers"."""
    return [r for r in rows if r["kind"] in ("conv", "fc")]


def count_params(config: str, **knobs) -> int:
    """Total parameters of ``config`` (weights and biases), from the table: no arrays allocated."""
    return sum(r["params"] for r in layer_table(config, **knobs))


def count_flops(config: str, **knobs) -> int:
    """FLOPs of one forward pass of one image (2 x multiply-adds of conv and fc layers)."""
    return sum(r["flops"] for r in layer_table(config, **knobs))


def receptive_field(rows: list[dict]) -> int:
    """Receptive field of one unit of the last max-pool's output (what one fc6 input position sees)."""
    return [r for r in rows if r["kind"] == "maxpool"][-1]["receptive_field"]


def _human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


def format_table(rows: list[dict], all_layers: bool = False) -> str:
    """The rows as a fixed-width text table with a totals line (ReLU/dropout/flatten rows hidden
    unless ``all_layers``; totals always count every row)."""
    shown = rows if all_layers else [r for r in rows if r["kind"] not in ("relu", "dropout", "flatten")]
    header = ("layer", "kind", "kernel", "output", "params", "FLOPs", "RF", "jump")
    lines = []
    for r in shown:
        kernel = "" if r["kernel"] is None else f"{r['kernel']}x{r['kernel']}/{r['stride']}"
        shape = "x".join(str(s) for s in r["output_shape"])
        lines.append((r["name"], r["kind"], kernel, shape, f"{r['params']:,}", _human(r["flops"]),
                      str(r["receptive_field"]), str(r["jump"])))
    total_params, total_flops = sum(r["params"] for r in rows), sum(r["flops"] for r in rows)
    lines.append(("total", "", "", "", f"{total_params:,}", _human(total_flops), "", ""))
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
    right = {4, 5, 6, 7}

    def fmt(cols):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))

    rule = "-" * len(fmt(header))
    return "\n".join(line.rstrip() for line in [fmt(header), rule, *(fmt(x) for x in lines[:-1]), rule, fmt(lines[-1])])
