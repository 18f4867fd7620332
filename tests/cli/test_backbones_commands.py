"""`headstart backbones`: the presets as the library lists them, one JSON object per line."""

from __future__ import annotations

import json

from headstart.library.models.presets import list_presets
from tests.cli.conftest import invoke, unboxed


def test_backbones_json_is_one_object_per_preset() -> None:
    code, output = invoke("backbones", "--json")
    assert code == 0
    rows = [json.loads(line) for line in output.splitlines()]
    assert [r["name"] for r in rows] == [p.name for p in list_presets()]
    families = {r["family"] for r in rows}
    assert {"VGG", "MobileNet", "DenseNet", "Inception", "ResNet", "EfficientNet", "NASNet"} <= families
    keys = {"name", "family", "min_input_size", "weights", "offline_weights", "weights_here", "weights_with_internet"}
    assert all(set(r) == keys for r in rows)


def test_verify_needs_weights_named() -> None:
    code, output = invoke("backbones", "verify", "resnet18", "photo.jpg")
    assert code == 2 and "--weights" in unboxed(output)  # a usage error: nothing loaded
