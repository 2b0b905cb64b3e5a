"""``vggedu info``: the table with totals, the exact counts of Table 2, and the JSON form."""

from __future__ import annotations

import json

import pytest

from vggedu import build_vgg
from vggedu.cli import main
from vggedu.configs import count_flops, count_params

EXACT = {"A": 132_863_336, "A-LRN": 132_863_336, "B": 133_047_848, "C": 133_638_952, "D": 138_357_544,
         "E": 143_667_240}


@pytest.mark.parametrize("config", list(EXACT))
def test_info_prints_the_exact_counts(config, capsys):
    assert main(["info", config.lower()]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"VGG-{config}: input 224x224x3, 1000 classes")
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert f"{EXACT[config]:,}" in total
    assert f"parameters {EXACT[config]:,}" in out
    assert "fc6" in out and "relu1_1" not in out


@pytest.mark.parametrize("config, rf", [("A", 150), ("D", 212), ("E", 268)])
def test_info_json(config, rf, capsys):
    assert main(["info", config, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"config", "input_size", "num_classes", "params", "flops", "receptive_field", "layers"} <= set(info)
    assert info["config"] == config and info["input_size"] == 224 and info["num_classes"] == 1000
    assert info["params"] == EXACT[config] == sum(row["params"] for row in info["layers"])
    assert info["flops"] == count_flops(config) == sum(row["flops"] for row in info["layers"])
    assert info["receptive_field"] == rf
    fc6 = next(row for row in info["layers"] if row["name"] == "fc6")
    assert fc6["params"] == 25088 * 4096 + 4096 and fc6["output_shape"] == [4096]


def test_info_small_sizes_match_a_built_model(capsys):
    assert main(["info", "C", "--size", "32", "--classes", "10", "--width", "0.25", "--fc-width", "64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    model = build_vgg("C", num_classes=10, input_size=32, width=0.25, fc_width=64)
    assert info["params"] == model.num_params() == count_params("C", num_classes=10, input_size=32, width=0.25,
                                                                fc_width=64)
    assert [row["name"] for row in info["layers"]] == [m.name for m in model.net]


def test_info_all_layers(capsys):
    assert main(["info", "A-LRN", "--all"]) == 0
    out = capsys.readouterr().out
    assert "relu1_1" in out and "lrn1" in out and "drop6" in out


@pytest.mark.parametrize("argv, message", [
    (["info", "VGG16"], "unknown VGG config 'VGG16': expected one of A, A-LRN, B, C, D, E, tiny"),
    (["info", "A", "--size", "16"], "input_size 16 is too small for config A"),
    (["info", "A", "--width", "0"], "width must be a positive number"),
])
def test_info_errors(argv, message, capsys):
    assert main(argv) == 1
    assert message in capsys.readouterr().err
