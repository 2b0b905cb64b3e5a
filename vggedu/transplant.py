"""Weight transplant: start a deeper VGG from a trained shallower one, as the paper did (Sect. 3.1).

Taught in ``notebooks/03_vgg_family.ipynb``; the command line is ``vggedu transplant``.

"To circumvent [bad initialisation], we began with training the configuration A, shallow enough to
be trained with random initialisation. Then, when training deeper architectures, we initialised
the first four convolutional layers and the last three fully-connected layers with the layers of
net A (the intermediate layers were initialised randomly)." A's first four convs are 3->64,
64->128, 128->256 and 256->256: in B to E those shapes sit in the layers of the *same names*,
conv1_1, conv2_1, conv3_1 and conv3_2, so ``layers="paper"`` copies

    conv1_1, conv2_1, conv3_1, conv3_2, fc6, fc7, fc8

and every named layer must exist in both nets with the same shapes, else a ``ValueError`` names
the first that does not fit (a different width, number of classes or input size shows up there).
``layers="matching"`` copies every layer present in both nets whose shapes match and lists the
rest; it is an error only when nothing at all fits. A list of layer names copies exactly those
(strictly, like "paper"). Everything is validated before the first array is copied: the
destination is either fully transplanted or untouched.

``src`` may be a ``VGG``, a ``Checkpoint`` or the path of a checkpoint file (``vggedu.checkpoint``);
``dst`` is a ``VGG`` whose parameters are overwritten in place (on its own device).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PAPER_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8")


@dataclass
class TransplantReport:
    """What ``transplant`` did: ``copied`` [(layer, W shape)], ``random`` [layers left as initialised],
    ``skipped`` [(layer, src W shape, dst W shape)]: same name, different shape (``"matching"`` only)."""

    src_config: str
    dst_config: str
    mode: str
    copied: list = field(default_factory=list)
    random: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "src_config": self.src_config, "dst_config": self.dst_config, "mode": self.mode,
            "copied": [[name, list(shape)] for name, shape in self.copied],
            "random": list(self.random),
            "skipped": [[name, list(a), list(b)] for name, a, b in self.skipped],
        }

    def __str__(self) -> str:
        lines = [f"transplant VGG-{self.src_config} -> VGG-{self.dst_config} (layers={self.mode}): "
                 f"{len(self.copied)} layers copied, {len(self.random)} left random"]
        for name, shape in self.copied:
            lines.append(f"  copied  {name:<8} W {'x'.join(map(str, shape))}")
        for name in self.random:
            why = next((f" (shapes differ: {'x'.join(map(str, a))} vs {'x'.join(map(str, b))})"
                        for n, a, b in self.skipped if n == name), "")
            lines.append(f"  random  {name}{why}")
        return "\n".join(lines)


def _layers_of(params: dict) -> dict:
    """{layer: {"W": array, "b": array}} from a flat params dict, in order."""
    out: dict = {}
    for key, value in params.items():
        layer, local = key.rsplit(".", 1)
        out.setdefault(layer, {})[local] = value
    return out


def _source(src):
    """(config, flat params) of a VGG, a Checkpoint or a checkpoint path."""
    if isinstance(src, (str, Path)):
        from vggedu.checkpoint import load_checkpoint

        src = load_checkpoint(src)
    if hasattr(src, "spec") and hasattr(src, "params") and isinstance(src.spec, dict):  # a Checkpoint
        return src.spec["config"], src.params
    if hasattr(src, "params") and hasattr(src, "config"):  # a VGG
        return src.config, src.params
    raise TypeError(f"transplant: src must be a VGG, a Checkpoint or a checkpoint path, got {type(src).__name__}")


def _shape(arrays: dict) -> tuple:
    return tuple(arrays["W"].shape)


def _fits(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(tuple(a[k].shape) == tuple(b[k].shape) for k in a)


def transplant(src, dst, layers="paper") -> TransplantReport:
    """Copy weights from ``src`` into the same-named layers of ``dst`` (in place) and report what moved.

    ``layers``: ``"paper"`` (conv1_1, conv2_1, conv3_1, conv3_2, fc6, fc7, fc8; strict),
    ``"matching"`` (every same-named layer of matching shape), or a list of layer names (strict).
    """
    if not (hasattr(dst, "net") and hasattr(dst, "config")):
        raise TypeError(f"transplant: dst must be a VGG (from build_vgg), got {type(dst).__name__}")
    src_config, src_params = _source(src)
    s_layers, d_layers = _layers_of(src_params), _layers_of(dst.params)
    mode = layers if isinstance(layers, str) else "list"
    report = TransplantReport(src_config, dst.config, mode)

    if layers == "matching":
        chosen = []
        for name, d in d_layers.items():
            if name not in s_layers:
                continue
            if _fits(s_layers[name], d):
                chosen.append(name)
            else:
                report.skipped.append((name, _shape(s_layers[name]), _shape(d)))
        if not chosen:
            first = report.skipped[0] if report.skipped else None
            detail = (f"first mismatch {first[0]}: {first[1]} in VGG-{src_config} vs {first[2]} in VGG-{dst.config}"
                      if first else "no layer names in common")
            raise ValueError(f"transplant: no layer of VGG-{src_config} fits VGG-{dst.config} ({detail}); "
                             "check width, number of classes and input size")
    else:
        if isinstance(layers, str) and layers != "paper":
            raise ValueError(f"transplant: layers must be 'paper', 'matching' or a list of layer names, got {layers!r}")
        chosen = list(PAPER_LAYERS if layers == "paper" else layers)
        if not chosen:
            raise ValueError("transplant: the list of layers to copy is empty")
        for name in chosen:  # validate everything before copying anything
            for where, have, config in (("source", s_layers, src_config), ("destination", d_layers, dst.config)):
                if name not in have:
                    raise ValueError(f"transplant: layer {name} is not in the {where} VGG-{config} "
                                     f"(its layers: {', '.join(have)}); nothing was copied")
            if not _fits(s_layers[name], d_layers[name]):
                s, d = s_layers[name], d_layers[name]
                shapes = "; ".join(f"{k} {tuple(s[k].shape)} vs {tuple(d[k].shape)}" for k in sorted(set(s) & set(d)))
                raise ValueError(
                    f"transplant: layer {name} does not fit: {shapes} (VGG-{src_config} -> VGG-{dst.config}; "
                    "a different width, number of classes or input size?); nothing was copied"
                )

    # all checks passed: copy (each array onto its destination's device)
    dst.net.load_params({f"{name}.{key}": value for name in chosen for key, value in s_layers[name].items()},
                        strict=False)
    report.copied = [(name, _shape(d_layers[name])) for name in chosen]
    report.random = [name for name in d_layers if name not in set(chosen)]
    return report
