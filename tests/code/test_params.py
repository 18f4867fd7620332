"""params.yaml is validated with messages naming the key; its values are the model's defaults; --set overrides work
as dvc exp run -S."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch

from headstart.ground.errors import ConfigError
from headstart.ground.params import Params, load_params, load_params_or_defaults
from headstart.library.data.transforms import Preprocessing, build_transform, load_augmentations, preprocessing_for

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def test_overrides_and_digest() -> None:
    base = load_params(REPO_PARAMS)
    changed = load_params(REPO_PARAMS, ["train.epochs=3", "model.head.hidden=[64, 32]", "data.test_dir=null"])
    assert (changed.train.epochs, changed.model.head.hidden, changed.data.test_dir) == (3, [64, 32], None)
    assert changed.digest() != base.digest() and load_params(REPO_PARAMS).digest() == base.digest()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.epochs=0"], r"train.epochs: Input should be greater than or equal to 1"),
        (["train.optimiser=sgd"], r"train.optimiser: Extra inputs are not permitted"),
        (["split.val_fraction=0.6", "split.test_fraction=0.5"], r"must be below 1"),
        (["train.bn=sometimes"], r"train.bn"),
        (["validate.min_per_class=0"], r"validate.min_per_class"),
        (["epochs"], r"expected KEY=VALUE"),
    ],
)
def test_bad_params_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_params(REPO_PARAMS, overrides)


def test_defaults_are_the_shipped_file(tmp_path: Path) -> None:
    # a command outside a workspace (no params.yaml) behaves exactly as one inside a fresh one
    assert Params() == load_params(REPO_PARAMS) == load_params_or_defaults(tmp_path / "no-params.yaml")


def _leaf_keys(node: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        if isinstance(value, dict) and key not in ("augment", "floors"):  # values that are mappings themselves
            keys += _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def test_every_knob_is_in_the_file_with_a_comment() -> None:
    lines = REPO_PARAMS.read_text().splitlines()
    for dotted in _leaf_keys(Params().as_dict()):
        if dotted == "augment":  # albumentations' own serialised form, commented above the section
            continue
        section, key = dotted.split(".")[0], dotted.split(".")[-1]
        after_section = lines[lines.index(next(x for x in lines if x.startswith(f"{section}:"))) :]
        line = next((x for x in after_section if x.lstrip().startswith(f"{key}:")), None)
        assert line is not None, f"{dotted} is missing from params.yaml"
        assert "#" in line, f"{dotted} has no comment: {line!r}"


@pytest.mark.parametrize(
    ("augment", "message"),
    [
        ({"transform": {"__class_fullname__": "NoSuchTransform"}}, r"augment: .*unknown .*'NoSuchTransform'"),
        ({"transforms": []}, r"augment: .*'transform' key"),
        (
            {"transform": {"__class_fullname__": "Compose", "p": 1.0, "transforms": [{"__class_fullname__": "Blurr"}]}},
            r"augment: .*unknown .*'Blurr'",
        ),
    ],
)
def test_a_bad_augment_pipeline_is_a_params_error_naming_it(augment: dict, message: str) -> None:
    raw = Params().as_dict()
    with pytest.raises(ConfigError, match=message):
        from headstart.ground.params import params_from_dict

        params_from_dict({**raw, "augment": augment})


def test_missing_params_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_augmentations_round_trip_through_albumentations() -> None:
    params = load_params(REPO_PARAMS)
    pipeline = load_augmentations(params.augment)
    assert [type(t).__name__ for t in pipeline.transforms] == [
        "HorizontalFlip",
        "Affine",
        "RandomBrightnessContrast",
    ]
    assert A.to_dict(A.from_dict(A.to_dict(pipeline))) == A.to_dict(pipeline)
    with pytest.raises(ConfigError, match="augment"):
        load_augmentations({"transform": {"__class_fullname__": "NoSuchTransform"}})


def test_preprocessing_comes_from_the_model_and_is_appended() -> None:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3)
    pre = preprocessing_for(model, 48)
    assert pre == Preprocessing(48, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")
    assert preprocessing_for(model, None).input_size == 224
    white = np.full((28, 28, 3), 255, dtype=np.uint8)
    out = build_transform(pre)(image=white)["image"]
    assert out.shape == (3, 48, 48) and torch.allclose(out, torch.ones_like(out))  # (1 - 0.5) / 0.5
