"""Transplant: the paper's seven layers from A into B-E, "matching", refusals that copy nothing, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vggedu import build_vgg, load_checkpoint, save_checkpoint, transplant
from vggedu.cli import main
from vggedu.transplant import PAPER_LAYERS

KNOBS = dict(num_classes=10, input_size=32, width=0.0625, fc_width=16)  # the family in miniature


def _net(config, seed, **kw):
    return build_vgg(config, **dict(KNOBS, **kw), init="he", seed=seed)


def _snapshot(model):
    return {k: v.copy() for k, v in model.params.items()}


def _layer_equal(a, b, layer):
    return all(np.array_equal(a[f"{layer}.{k}"], b[f"{layer}.{k}"]) for k in "Wb")


@pytest.mark.parametrize("config", ["B", "C", "D", "E"])
def test_paper_layers_go_from_A_into_the_deeper_nets(config):
    src, dst = _net("A", 1), _net(config, 2)
    before = _snapshot(dst)
    report = transplant(src, dst)
    assert [name for name, _ in report.copied] == list(PAPER_LAYERS)
    layers = [k[:-2] for k in dst.params if k.endswith(".W")]
    assert report.random == [n for n in layers if n not in PAPER_LAYERS]
    for layer in layers:
        if layer in PAPER_LAYERS:
            assert _layer_equal(dst.params, src.params, layer), layer
        else:
            assert _layer_equal(dst.params, before, layer), layer  # left as initialised
    assert dst.params["conv3_2.W"].shape == (3, 3, 16, 16)  # 256 -> 256 at width 1/16
    assert report.src_config == "A" and report.dst_config == config
    text = str(report)
    assert "7 layers copied" in text and "copied  conv3_2" in text and "random  conv1_2" in text
    json.dumps(report.to_dict())


def test_matching_copies_every_same_shaped_layer():
    src, dst = _net("A", 1), _net("B", 2)
    report = transplant(src, dst, layers="matching")
    a_layers = [k[:-2] for k in src.params if k.endswith(".W")]
    assert [n for n, _ in report.copied] == a_layers  # all 11 of A's layers fit into B
    assert report.random == ["conv1_2", "conv2_2"] and report.skipped == []


def test_matching_skips_layers_whose_shapes_differ():
    src, dst = _net("C", 1), _net("D", 2)  # C's conv3_3, conv4_3, conv5_3 are 1x1, D's are 3x3
    report = transplant(src, dst, layers="matching")
    assert [s[0] for s in report.skipped] == ["conv3_3", "conv4_3", "conv5_3"]
    assert report.skipped[0][1] == (1, 1, 16, 16) and report.skipped[0][2] == (3, 3, 16, 16)
    assert report.random == ["conv3_3", "conv4_3", "conv5_3"]
    assert "shapes differ: 1x1x16x16 vs 3x3x16x16" in str(report)

    fewer_classes = _net("D", 3, num_classes=5)
    report = transplant(_net("A", 1), fewer_classes, layers="matching")
    assert "fc8" in report.random and [s[0] for s in report.skipped] == ["fc8"]  # fine-tuning on new classes


@pytest.mark.parametrize("change, first_misfit", [
    (dict(width=0.125), "conv1_1"),
    (dict(num_classes=5), "fc8"),
    (dict(input_size=64), "fc6"),
    (dict(fc_width=32), "fc6"),
])
def test_a_mismatch_names_the_first_misfit_and_copies_nothing(change, first_misfit):
    src, dst = _net("A", 1), _net("D", 2, **change)
    before = _snapshot(dst)
    with pytest.raises(ValueError, match=rf"layer {first_misfit} does not fit: W .*nothing was copied"):
        transplant(src, dst)
    assert all(np.array_equal(dst.params[k], before[k]) for k in before)  # not even conv1_1


def test_matching_with_nothing_in_common_is_an_error():
    report = transplant(_net("A", 1), _net("D", 2, width=0.125), layers="matching")
    assert [n for n, _ in report.copied] == ["fc7", "fc8"]  # width scales the convs only
    with pytest.raises(ValueError, match="no layer of VGG-A fits VGG-D.*first mismatch conv1_1"):
        transplant(_net("A", 1), _net("D", 2, width=0.125, fc_width=8), layers="matching")


def test_explicit_layer_lists():
    src, dst = _net("A", 1), _net("E", 2)
    report = transplant(src, dst, layers=["conv1_1", "fc8"])
    assert [n for n, _ in report.copied] == ["conv1_1", "fc8"]
    assert _layer_equal(dst.params, src.params, "fc8") and not _layer_equal(dst.params, src.params, "fc7")
    with pytest.raises(ValueError, match="layer conv1_2 is not in the source VGG-A"):
        transplant(src, dst, layers=["conv1_1", "conv1_2"])
    with pytest.raises(ValueError, match="layers must be 'paper', 'matching'"):
        transplant(src, dst, layers="all")
    with pytest.raises(ValueError, match="empty"):
        transplant(src, dst, layers=[])
    with pytest.raises(TypeError, match="dst must be a VGG"):
        transplant(src, dst.params)
    with pytest.raises(TypeError, match="src must be a VGG, a Checkpoint or a checkpoint path"):
        transplant(42, dst)


def test_source_from_a_checkpoint(tmp_path):
    src = _net("A", 1)
    path = save_checkpoint(tmp_path / "a.npz", src)
    for source in (path, str(path), load_checkpoint(path)):
        dst = _net("D", 2)
        report = transplant(source, dst)
        assert report.src_config == "A" and _layer_equal(dst.params, src.params, "conv3_2")


def test_transplant_command(tmp_path, capsys):
    src = _net("A", 1)
    src_path = save_checkpoint(tmp_path / "a.npz", src)
    out = tmp_path / "d.npz"
    assert main(["transplant", "--from", str(src_path), "--to", "d", "--out", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "transplant VGG-A -> VGG-D (layers=paper): 7 layers copied, 9 left random" in printed
    assert "copied  fc6" in printed and f"saved {out}" in printed
    loaded = load_checkpoint(out, config="D")
    assert loaded.spec == dict(src.spec(), config="D")
    assert _layer_equal(loaded.params, src.params, "conv2_1")
    fresh = build_vgg("D", **KNOBS, init="paper", seed=3)
    assert _layer_equal(loaded.params, fresh.params, "conv1_2")  # the rest: --init paper, --seed 3
    assert loaded.meta["transplant"]["copied"][0] == ["conv1_1", [3, 3, 3, 4]]

    assert main(["transplant", "--from", str(src_path), "--to", "F", "--out", str(tmp_path / "f.npz")]) == 1
    assert "unknown VGG config 'F'" in capsys.readouterr().err
    assert not (tmp_path / "f.npz").exists()
    assert main(["transplant", "--from", str(tmp_path / "nope.npz"), "--to", "D", "--out", str(out)]) == 1
