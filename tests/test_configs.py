"""Table 1 and its arithmetic: exact parameter counts (Table 2), receptive fields and FLOPs checked by hand."""

from __future__ import annotations

import pytest

from vggedu import figures
from vggedu.configs import (
    CONFIGS,
    DEPTH,
    PAPER_CONFIGS,
    canonical,
    count_flops,
    count_params,
    format_table,
    layer_table,
    receptive_field,
    weight_layers,
)

# The exact totals behind Table 2 (133M, 133M, 133M, 134M, 138M, 144M) at 224x224, 1000 classes.
TABLE2 = {"A": 132_863_336, "A-LRN": 132_863_336, "B": 133_047_848, "C": 133_638_952, "D": 138_357_544,
          "E": 143_667_240}


@pytest.mark.parametrize("config", PAPER_CONFIGS)
def test_exact_parameter_counts_of_table2(config):
    assert count_params(config) == TABLE2[config]
    assert round(count_params(config) / 1e6) == {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}[config]


@pytest.mark.parametrize("config", PAPER_CONFIGS)
def test_depth_is_the_number_of_weight_layers(config):
    assert len(weight_layers(layer_table(config))) == DEPTH[config]


def test_config_A_by_hand():
    """Receptive field, jump, parameters and FLOPs of every layer of A, computed here independently."""
    rows = {r["name"]: r for r in layer_table("A")}
    # Receptive field r and jump j by hand: a KxK stride-1 conv adds (K-1)*j, a 2x2/2 pool adds j, doubles j.
    expected_rf_jump = {
        "conv1_1": (3, 1), "pool1": (4, 2),
        "conv2_1": (8, 2), "pool2": (10, 4),
        "conv3_1": (18, 4), "conv3_2": (26, 4), "pool3": (30, 8),
        "conv4_1": (46, 8), "conv4_2": (62, 8), "pool4": (70, 16),
        "conv5_1": (102, 16), "conv5_2": (134, 16), "pool5": (150, 32),
    }
    for name, (rf, jump) in expected_rf_jump.items():
        assert (rows[name]["receptive_field"], rows[name]["jump"]) == (rf, jump), name
    # fc6 is a 7x7 conv over pool5 in dense evaluation: 150 + 6 * 32
    assert rows["fc6"]["receptive_field"] == 342 == rows["fc8"]["receptive_field"]

    # Multiply-adds: output pixels x KH*KW*C x F for a conv, D x M for an FC layer.
    macs = {
        "conv1_1": 224 * 224 * 9 * 3 * 64,
        "conv2_1": 112 * 112 * 9 * 64 * 128,
        "conv3_1": 56 * 56 * 9 * 128 * 256,
        "conv3_2": 56 * 56 * 9 * 256 * 256,
        "conv4_1": 28 * 28 * 9 * 256 * 512,
        "conv4_2": 28 * 28 * 9 * 512 * 512,
        "conv5_1": 14 * 14 * 9 * 512 * 512,
        "conv5_2": 14 * 14 * 9 * 512 * 512,
        "fc6": 7 * 7 * 512 * 4096,
        "fc7": 4096 * 4096,
        "fc8": 4096 * 1000,
    }
    params = {
        "conv1_1": 27 * 64 + 64, "conv2_1": 576 * 128 + 128, "conv3_1": 1152 * 256 + 256,
        "conv3_2": 2304 * 256 + 256, "conv4_1": 2304 * 512 + 512, "conv4_2": 4608 * 512 + 512,
        "conv5_1": 4608 * 512 + 512, "conv5_2": 4608 * 512 + 512,
        "fc6": 25088 * 4096 + 4096, "fc7": 4096 * 4096 + 4096, "fc8": 4096 * 1000 + 1000,
    }
    for name in macs:
        assert rows[name]["flops"] == 2 * macs[name], name
        assert rows[name]["params"] == params[name], name
    assert count_flops("A") == 2 * sum(macs.values()) == 15_218_180_096  # 7.6 GMACs per image
    assert count_params("A") == sum(params.values())
    # pooling, ReLU, flatten and dropout cost nothing in this count
    assert all(r["flops"] == 0 and r["params"] == 0 for r in rows.values() if r["kind"] not in ("conv", "fc"))


def test_receptive_fields_of_the_deep_configs():
    def last(config, kind):
        return [r for r in layer_table(config) if r["kind"] == kind][-1]["receptive_field"]

    assert [receptive_field(layer_table(c)) for c in ("A", "B", "C", "D", "E")] == [150, 156, 156, 212, 268]
    assert last("D", "conv") == 196  # VGG-16's conv5_3, the figure usually quoted
    assert last("C", "conv") == last("B", "conv") == 140  # C's 1x1 convs see no further than B


def test_shapes_and_derived_fc6_fan_in():
    rows = {r["name"]: r for r in layer_table("D")}
    assert rows["conv1_1"]["output_shape"] == (224, 224, 64)
    assert rows["pool5"]["output_shape"] == (7, 7, 512)
    assert rows["fc6"]["in_channels"] == 25088 and rows["fc8"]["output_shape"] == (1000,)
    for size, width in ((32, 1.0), (64, 0.25), (96, 0.5), (256, 1.0)):
        rows = {r["name"]: r for r in layer_table("A", input_size=size, width=width, num_classes=10)}
        side = size // 32
        assert rows["fc6"]["in_channels"] == side * side * round(512 * width)
        assert rows["fc8"]["params"] == 4096 * 10 + 10


def test_odd_input_sizes_floor_like_the_pool():
    rows = {r["name"]: r for r in layer_table("A", input_size=48)}
    assert [rows[f"pool{i}"]["output_shape"][0] for i in range(1, 6)] == [24, 12, 6, 3, 1]


def test_width_multiplier_scales_conv_channels_only():
    rows = weight_layers(layer_table("A", width=0.25, input_size=32, num_classes=10))
    assert [r["out_channels"] for r in rows] == [16, 32, 64, 64, 128, 128, 128, 128, 4096, 4096, 10]
    assert [r["out_channels"] for r in weight_layers(layer_table("A", width=1e-6))][:2] == [1, 1]


def test_fc_width_knob():
    assert count_params("A", fc_width=4096) == TABLE2["A"]
    small = {r["name"]: r for r in layer_table("A", fc_width=256, num_classes=10, input_size=32)}
    assert small["fc6"]["params"] == 512 * 256 + 256 and small["fc7"]["params"] == 256 * 256 + 256


def test_config_C_has_1x1_convs_and_only_A_LRN_has_LRN():
    kernels = {r["name"]: r["kernel"] for r in layer_table("C") if r["kind"] == "conv"}
    assert [n for n, k in kernels.items() if k == 1] == ["conv3_3", "conv4_3", "conv5_3"]
    assert all(r["kernel"] == 3 for r in layer_table("D") if r["kind"] == "conv")
    names = [r["name"] for r in layer_table("A-LRN")]
    assert names[:4] == ["conv1_1", "relu1_1", "lrn1", "pool1"]
    for config in ("A", "B", "C", "D", "E"):
        assert not any(r["kind"] == "lrn" for r in layer_table(config))


def test_head_and_dropout_rows():
    assert [r["name"] for r in layer_table("B")][-8:] == ["flatten", "fc6", "relu6", "drop6", "fc7", "relu7",
                                                          "drop7", "fc8"]
    assert not any(r["kind"] == "dropout" for r in layer_table("B", dropout=0.0))


def test_tiny_is_small_and_covers_every_layer_kind():
    rows = layer_table("tiny", input_size=32, num_classes=10)
    assert {r["kind"] for r in rows} == {"conv", "relu", "lrn", "maxpool", "flatten", "fc", "dropout"}
    assert any(r["kernel"] == 1 for r in rows if r["kind"] == "conv")
    assert count_params("tiny", input_size=32, num_classes=10) < 50_000


def test_names_are_case_insensitive_and_unknown_names_are_refused():
    assert canonical("a-lrn") == "A-LRN" and canonical(" d ") == "D" and canonical("TINY") == "tiny"
    with pytest.raises(ValueError, match="unknown VGG config 'F'.*A, A-LRN, B, C, D, E, tiny"):
        layer_table("F")
    with pytest.raises(ValueError, match="unknown VGG config"):
        canonical(16)


@pytest.mark.parametrize("knobs, message", [
    (dict(input_size=16), "input_size 16 is too small"),
    (dict(input_size=0), "input_size must be a positive int"),
    (dict(num_classes=0), "num_classes"),
    (dict(num_classes=True), "num_classes"),
    (dict(width=0), "width must be a positive number"),
    (dict(width=float("nan")), "width"),
    (dict(fc_width=0), "fc_width"),
])
def test_bad_knobs_are_refused(knobs, message):
    with pytest.raises(ValueError, match=message):
        layer_table("A", **knobs)


def test_flops_grow_with_the_input_area_params_do_not_for_convs():
    def conv(config, size, key):
        return sum(r[key] for r in layer_table(config, input_size=size) if r["kind"] == "conv")

    assert conv("D", 448, "flops") == 4 * conv("D", 224, "flops")
    assert conv("D", 448, "params") == conv("D", 224, "params")


def test_format_table_has_totals():
    text = format_table(layer_table("D"))
    assert "138,357,544" in text.splitlines()[-1] and "fc6" in text and "relu" not in text
    assert "relu1_1" in format_table(layer_table("D"), all_layers=True)


def test_every_config_has_the_table_entries_it_should():
    assert set(CONFIGS) == {*PAPER_CONFIGS, "tiny"}
    for name, entries in CONFIGS.items():
        assert entries.count("maxpool") == 5, name


def test_figures_script_writes_the_three_pngs(tmp_path):
    assert figures.main(["--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(figures.FIGURES)
    assert all((tmp_path / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in written)
