"""params.yaml is validated with messages naming the key; its values are the model's defaults; --set overrides work
as dvc exp run -S."""

from __future__ import annotations

import json
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from headstart.ground.errors import ConfigError
from headstart.ground.params import Params, load_params, load_params_or_defaults, params_from_dict
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
        # strict: no lax coercion, and the value given is shown
        (["train.resume=yes"], r"train.resume: Input should be a valid boolean \(got 'yes'\)"),
        (["train.epochs=3.0"], r"train.epochs: Input should be a valid integer \(got 3.0\)"),
        (['train.epochs="3"'], r"train.epochs: Input should be a valid integer \(got '3'\)"),
        (["train.compile=1"], r"train.compile: Input should be a valid boolean \(got 1\)"),
        # across fields
        (["validate.min_side=9000"], r"validate.min_side \(9000\) is above validate.max_side \(8192\)"),
        (["train.unfreeze_milestones=[9]", "train.freeze_stages=2"], r"must lie within 1..train.epochs \(8\)"),
        (["train.unfreeze_milestones=[3, 2]", "train.freeze_stages=2"], r"must be increasing"),
        (["train.unfreeze_milestones=[2]"], r"releases 1 stages but train.freeze_stages freezes 0"),
        (["train.warmup_epochs=8"], r"train.warmup_epochs \(8\) must be below train.epochs \(8\)"),
        (["validate.expected_classes=[a, a]"], r"names a class twice"),
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
        ({"transforms": []}, r"augment: .*'transform' key"),
        ({"transform": ["HorizontalFlip"]}, r"augment: .*augment.transform: each transform is a mapping"),
        (
            {"transform": {"__class_fullname__": "Compose", "transforms": [{"p": 0.5}]}},
            r"augment: .*augment.transform.transforms\[0\]: each transform is a mapping with a '__class_fullname__'",
        ),
    ],
)
def test_a_malformed_augment_pipeline_is_a_params_error_naming_it(augment: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        params_from_dict({**Params().as_dict(), "augment": augment})


UNKNOWN_TRANSFORMS = [
    ({"transform": {"__class_fullname__": "NoSuchTransform"}}, r"augment: .*unknown .*'NoSuchTransform'"),
    (
        {"transform": {"__class_fullname__": "Compose", "p": 1.0, "transforms": [{"__class_fullname__": "Blurr"}]}},
        r"augment: .*unknown .*'Blurr'",
    ),
    (
        {"transform": {"__class_fullname__": "HorizontalFlip", "p": "often"}},
        r"augment: not a valid albumentations pipeline",
    ),
]


@pytest.mark.parametrize(("augment", "message"), UNKNOWN_TRANSFORMS)
def test_an_unknown_transform_stops_a_run_before_anything_trains(
    augment: dict, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Params check the shape alone (no albumentations import); the run's first act builds the pipeline."""
    from flows.retrain import load_run_params

    raw = {**Params().as_dict(), "augment": augment}
    raw["data"] = {"dir": "data/images", "test_dir": None}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert load_params("params.yaml").augment == augment  # reading params never builds it
    with pytest.raises(ConfigError, match=message):
        load_run_params("params.yaml", [], "runs/r")
    assert not (tmp_path / "runs").exists()  # nothing was started


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


def test_yaml_scalars_follow_yaml_1_2_as_dvc_reads_them() -> None:
    changed = load_params(REPO_PARAMS, ["train.lr=1e-3", "train.resume=false", "validate.expected_classes=[yes, no]"])
    assert changed.train.lr == 0.001 and changed.train.resume is False
    assert changed.validate_.expected_classes == ["yes", "no"]  # class names, not booleans


SECTIONS = {name: field.annotation for name, field in Params.model_fields.items() if name != "augment"}
FIELD_NAMES = sorted({f for model in SECTIONS.values() for f in getattr(model, "model_fields", {})})
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(-3, 12), max_size=3),
)
params_dicts = st.dictionaries(
    st.sampled_from([*SECTIONS, "validate", "junk"]),
    st.dictionaries(st.sampled_from([*FIELD_NAMES, "junk"]), scalars, max_size=4),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(params_dicts)
def test_any_params_dict_is_valid_or_one_clear_error_naming_keys(raw: dict) -> None:
    try:
        params = params_from_dict(raw)
    except ConfigError as exc:
        first, *lines = str(exc).splitlines()
        assert first == "params: invalid parameters" and lines
        assert all(line.startswith("  ") and ": " in line for line in lines), str(exc)
    else:  # what validates round-trips exactly
        assert params_from_dict(json.loads(json.dumps(params.model_dump(by_alias=True)))) == params


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["resume", "compile"]), st.one_of(st.text(), st.integers(), st.floats()))
def test_a_bool_param_takes_only_true_or_false(name: str, value) -> None:
    with pytest.raises(ConfigError, match=rf"train.{name}: Input should be a valid boolean"):
        params_from_dict({"train": {name: value}})


label_names = st.one_of(
    st.sampled_from(["NA", "N/A", "#N/A", "<NA>", "None", "null", "NULL", "nan", "NaN", "-nan", "true", "1e3", "0001"]),
    st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=12).filter(
        lambda s: "/" not in s
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(label_names, min_size=1, max_size=8, unique=True))
def test_the_manifest_reader_keeps_every_label_as_written(labels: list[str]) -> None:
    import tempfile

    import pandas as pd

    from headstart.library.data.manifest import COLUMNS
    from headstart.library.data.split import load_manifest_table

    rows = [
        dict(zip(COLUMNS, [f"{label}/x.png", label, 10, "0" * 64, 8, 8, "L", True, None], strict=True))
        for label in labels
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "manifest.csv"
        pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)  # as the validate step writes it
        table = load_manifest_table(path)
    assert table["label"].tolist() == labels
    assert table["error"].isna().all() and table["bytes"].tolist() == [10] * len(labels)
