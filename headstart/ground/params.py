"""One typed model for params.yaml: every knob in one place, validated with clear messages."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from headstart.ground.errors import ConfigError

# The shipped params.yaml's pipeline (albumentations' own serialised form); tests keep the two equal.
DEFAULT_AUGMENT: dict[str, Any] = {
    "__version__": "2.0.8",
    "transform": {
        "__class_fullname__": "Compose",
        "p": 1.0,
        "transforms": [
            {"__class_fullname__": "HorizontalFlip", "p": 0.5},
            {
                "__class_fullname__": "Affine",
                "p": 0.5,
                "scale": [0.9, 1.1],
                "translate_percent": [-0.05, 0.05],
                "rotate": [-10, 10],
            },
            {
                "__class_fullname__": "RandomBrightnessContrast",
                "p": 0.3,
                "brightness_limit": 0.1,
                "contrast_limit": 0.1,
            },
        ],
    },
}


def check_augment_shape(serialised: dict[str, Any]) -> None:
    """Check the shape of albumentations' serialised form without importing albumentations (it imports torch,
    seconds that commands which never augment must not pay): a ``transform`` key and every transform a mapping
    naming its class. Whether the named transforms exist and take these arguments is albumentations' to say:
    ``headstart.library.data.transforms.check_augmentations``, which every training entry point runs first."""
    if "transform" not in serialised:
        raise ValueError("augment must be albumentations' serialised form (A.to_dict): a 'transform' key")
    _check_transform_node(serialised["transform"], "augment.transform")


def _check_transform_node(node: Any, where: str) -> None:
    if not isinstance(node, dict) or not isinstance(node.get("__class_fullname__"), str):
        raise ValueError(f"{where}: each transform is a mapping with a '__class_fullname__' (got {node!r:.80})")
    children = node.get("transforms")
    if children is None:
        return
    if not isinstance(children, list):
        raise ValueError(f"{where}.transforms: a list of transforms (got {children!r:.80})")
    for i, child in enumerate(children):
        _check_transform_node(child, f"{where}.transforms[{i}]")


class _Section(BaseModel):
    # strict: no lax coercion ("3.0" or 3.0 for an int, "yes" for a bool); an int is still a valid float
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataParams(_Section):
    """The dataset a run trains on and the fixed set it is tested on (folders of the workspace, under DVC)."""

    dir: str = "data/fashion-mnist"
    test_dir: str | None = "data/fashion-mnist-test"


class ValidateParams(_Section):
    """What the validate step accepts: image modes, sizes, files and classes (Great Expectations suite)."""

    allowed_modes: list[str] = Field(
        default_factory=lambda: ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I;16B", "I;16L", "I"]
    )
    min_side: int = Field(8, ge=1)
    max_side: int = Field(8192, ge=1)
    max_pixels: int = Field(50_000_000, ge=1)
    max_file_bytes: int = Field(100_000_000, ge=1)
    min_per_class: int = Field(2, ge=1)
    max_imbalance_ratio: float = Field(20.0, ge=1.0)
    expected_classes: list[str] | None = None
    workers: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _sides_in_order(self) -> ValidateParams:
        if self.min_side > self.max_side:
            raise ValueError(f"validate.min_side ({self.min_side}) is above validate.max_side ({self.max_side})")
        if self.expected_classes is not None and len(set(self.expected_classes)) != len(self.expected_classes):
            raise ValueError("validate.expected_classes names a class twice")
        return self


class SplitParams(_Section):
    """How images are assigned to train, validation and test: by content hash, so a new version moves none."""

    seed: int = 42
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitParams:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("split.val_fraction + split.test_fraction must be below 1 to leave training images")
        return self


class HeadParams(_Section):
    """The new head on the pretrained backbone: pooling, dropout and extra hidden layers."""

    pool: Literal["avg", "max", "avgmax", "catavgmax"] = "avg"
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    hidden: list[int] = Field(default_factory=list)


class ModelParams(_Section):
    """The pretrained backbone (any timm name), its weights, and the input sizes it sees."""

    backbone: str = "tf_efficientnet_lite0"
    weights: str = "package:efficientnet-lite0"
    input_size: int | None = Field(64, ge=16)  # what fine-tuning sees; null: the backbone's pretrained size
    # what frozen-backbone features are extracted at (features scenario, data health); null: the pretrained size
    features_input_size: int | None = Field(None, ge=16)
    # frozen-backbone features: 0 = what the classifier sees (pre-logits); n = the last n stages' outputs, pooled
    # and concatenated (mid-level features transfer better to images unlike ImageNet's: benchmarks/recipes.py)
    feature_stages: int = Field(0, ge=0)
    head: HeadParams = HeadParams()


class DistributedParams(_Section):
    """Training across processes: ``nproc`` > 1 runs a finetune or hybrid train step under torchrun (DDP)."""

    nproc: int = Field(1, ge=1, le=256)  # processes on this machine; train.batch_size is the global batch


class TrainParams(_Section):
    """The training scenario (features, finetune, hybrid, or auto by data size and device) and its recipe."""

    scenario: Literal["auto", "features", "finetune", "hybrid"] = "auto"
    # auto: `features` when the smallest class has fewer training images than this, else `auto_large` (on CUDA at
    # the backbone's pretrained resolution instead of model.input_size)
    auto_features_below: int = Field(100, ge=1)
    auto_large: Literal["finetune", "hybrid"] = "finetune"
    classifier: Literal["logreg", "linear_svm", "rbf_svm", "random_forest"] = "logreg"  # features scenario
    # inverse regularisation of logreg and the SVMs; auto: chosen by stratified cross-validation
    classifier_c: Annotated[float, Field(gt=0)] | Literal["auto"] = "auto"
    # classifier_c auto: C chosen on a stratified sample of at most this many rows, then one fit on all; null: all
    classifier_search_images: int | None = Field(5000, ge=20)
    # features scenario: the rows the classifier is fitted on (train+val: every labelled image; with tiny data a
    # held-out validation split costs more than it tells, and classifier_c auto cross-validates instead)
    features_fit: Literal["train", "train+val"] = "train+val"
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.02, ge=0)
    warmup_epochs: int = Field(0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    freeze_stages: int = Field(0, ge=0)
    freeze_patterns: list[str] = Field(default_factory=list)  # module-name regexes frozen as well
    bn: Literal["trained", "frozen"] = "trained"
    unfreeze_milestones: list[int] = Field(default_factory=list)  # epochs (1-based) that release one more stage
    layer_decay: float | None = Field(None, gt=0, le=1)  # layer-wise lr decay via timm's optimizer factory
    ema_decay: float | None = Field(None, gt=0, lt=1)  # keep an EMA of the weights; it is what gets saved
    mixup_alpha: float = Field(0.0, ge=0)
    cutmix_alpha: float = Field(0.0, ge=0)
    early_stopping_patience: int | None = Field(None, ge=1)  # epochs without val-accuracy gain; best restored
    resume: bool = True  # continue from the run folder's last checkpoint when one exists for these params
    head_epochs: int = Field(100, ge=1)  # hybrid: full-batch steps fitting the head on cached features
    head_lr: float = Field(1e-2, gt=0)
    feature_cache: str | None = None  # the feature store; null: the user cache (~/.cache/headstart/feature-store)
    feature_cache_max_gb: float = Field(4.0, gt=0)  # the feature store's cap (least recently used evicted)
    seed: int = 0
    num_workers: int = Field(2, ge=0)
    threads: int | None = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when torch sees a GPU
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on the CPU
    compile: bool = False  # torch.compile the model for training (pays off on long GPU runs)
    deterministic: bool = False  # torch's deterministic algorithms (CUDA: cuBLAS/cuDNN)
    distributed: DistributedParams = DistributedParams()

    @model_validator(mode="after")
    def _schedule_fits_the_epochs(self) -> TrainParams:
        milestones = self.unfreeze_milestones
        if any(not 1 <= m <= self.epochs for m in milestones):
            raise ValueError(f"train.unfreeze_milestones {milestones} must lie within 1..train.epochs ({self.epochs})")
        if milestones != sorted(set(milestones)):
            raise ValueError(f"train.unfreeze_milestones {milestones} must be increasing, each epoch once")
        if len(milestones) > self.freeze_stages:
            raise ValueError(
                f"train.unfreeze_milestones releases {len(milestones)} stages but train.freeze_stages freezes "
                f"{self.freeze_stages}"
            )
        if self.batch_size % self.distributed.nproc:
            raise ValueError(
                f"train.batch_size ({self.batch_size}) is the global batch: it must divide evenly among "
                f"train.distributed.nproc ({self.distributed.nproc}) processes"
            )
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"train.warmup_epochs ({self.warmup_epochs}) must be below train.epochs ({self.epochs})")
        return self

    @field_validator("freeze_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"freeze pattern {pattern!r} is not a regular expression: {exc}") from None
        return value


class EvaluateParams(_Section):
    """Scoring on the test set, and the pretrained-versus-scratch transfer report."""

    batch_size: int = Field(64, ge=1)
    transfer_report: bool = True  # the same head on pretrained vs randomly initialised backbone features
    transfer_images: int | None = Field(300, ge=20)  # at most this many fit and test rows each (stratified sample)


class HealthParams(_Section):
    """Data health: near-duplicate leakage, suspected label errors, drift from the champion's training data."""

    leakage: Literal["drop", "fail", "warn"] = "drop"  # training copies of test images: removed | stop | kept, listed
    duplicate_similarity: float = Field(0.985, gt=0, le=1)  # thumbnail correlation (best 2 px shift) of a copy
    duplicate_edge_similarity: float = Field(0.96, gt=0, le=1)  # and of the two images' edge maps
    within_duplicates: bool = True  # also search the training data itself (same class: counted; across: named)
    # px of the frozen-backbone features label issues and drift read; None: model.features_input_size (shared)
    input_size: int | None = Field(96, ge=16, le=1024)
    label_issues: bool = True  # cleanlab on out-of-fold probabilities of a linear model on backbone features
    label_folds: int = Field(5, ge=2, le=20)  # cross-validation folds for those probabilities
    # the probe's products: auto = bfloat16 where the CPU computes it natively (2x faster, 99.8 % the same flags)
    probe_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    max_label_issue_fraction: float | None = Field(None, ge=0, le=1)  # stop the run above it; null: report only
    drift: bool = True  # the training data's features against the champion's reference sample
    drift_permutations: int = Field(500, ge=50, le=20_000)  # of the MMD permutation test
    drift_alpha: float = Field(0.01, gt=0, lt=1)  # p below it: drift flagged (reported)
    max_drift: float | None = Field(None, ge=0)  # a gate rule: MMD² above it fails the challenger; null: reported


class GateParams(_Section):
    """The promotion policy: what a challenger must show before it replaces the champion."""

    primary_metric: Literal["accuracy", "macro_f1"] = "accuracy"
    direction: Literal["maximize", "minimize"] = "maximize"
    floors: dict[Literal["accuracy", "macro_f1"], float] = Field(default_factory=lambda: {"accuracy": 0.5})
    min_abs_gain: float = Field(0.0, ge=0)  # on the primary metric; a tie never passes
    min_rel_gain: float = Field(0.0, ge=0)  # gain / champion's value
    max_class_recall_drop: float = Field(0.05, ge=0, le=1)
    min_class_support: int = Field(10, ge=1)  # classes with fewer test images are reported, not judged
    mcnemar_alpha: float | None = Field(None, gt=0, lt=1)  # optional exact McNemar test on paired predictions
    # paired bootstrap interval of the primary metric's gain: a rule when set (lower bound >= it), else reported
    min_ci_lower: float | None = Field(None, ge=-1, le=1)
    ci_confidence: float = Field(0.95, gt=0.5, lt=1)  # two-sided confidence level of the intervals
    bootstrap_resamples: int = Field(2000, ge=100, le=100_000)  # seeded: a re-judge gets the same interval
    bootstrap_seed: int = 0  # the resamples' seed: the same decision on the same predictions
    allow_class_change: bool = False  # a different class set is promoted only when this is set


class RegistryParams(_Section):
    """Where versions are registered (a folder or S3), the model's name, signing, and what gc keeps."""

    uri: str = "file://registry"  # file://PATH (relative to the workspace) or s3://bucket/prefix
    model_name: str = Field("fashion-mnist", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    signing_key_env: str | None = None  # an environment variable holding the HMAC key; null: unsigned
    # `headstart registry gc`: never the champion or any version in the alias history, never an event
    keep_last: int | None = Field(None, ge=1)  # keep the newest N versions; null: keep all
    keep_failed_days: int | None = Field(None, ge=0)  # remove FAIL versions older than this; null: keep them
    incomplete_grace_hours: float = Field(24.0, ge=0)  # an upload without its manifest older than this is debris


class RunParams(_Section):
    """Limits on a run's time: nothing may hang a run (and hold the model's retrain slot) forever."""

    timeout_minutes: float = Field(240.0, gt=0)  # the whole run: each step gets at most what is left
    step_timeout_minutes: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)  # e.g. {train: 120}


class NotifyParams(_Section):
    """Where ``headstart serve``'s automations send a webhook on every gate decision and every failed run."""

    webhook_url: str | None = None  # e.g. an internal hook; ${HEADSTART_WEBHOOK_URL} wins (secret URLs go there)


class Params(_Section):
    """The whole of params.yaml."""

    data: DataParams = DataParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    split: SplitParams = SplitParams()
    augment: dict[str, Any] = Field(
        default_factory=lambda: json.loads(json.dumps(DEFAULT_AUGMENT)),
        description="The training augmentations in albumentations' own serialised form (A.to_dict / A.from_dict); "
        "resize, normalisation and tensor conversion are appended in code from the backbone's data config.",
    )
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    health: HealthParams = HealthParams()
    evaluate: EvaluateParams = EvaluateParams()
    gate: GateParams = GateParams()
    registry: RegistryParams = RegistryParams()
    run: RunParams = RunParams()
    notify: NotifyParams = NotifyParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("augment")
    @classmethod
    def _augment_builds(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value:
            check_augment_shape(value)  # the names are checked against albumentations before anything trains
        return value

    def as_dict(self) -> dict[str, Any]:
        """Plain dict with the file's own key names (``validate``, not ``validate_``)."""
        return self.model_dump(mode="json", by_alias=True)

    def digest(self) -> str:
        """Stable sha256 of the effective params, recorded in lineage; the ``run`` limits and ``notify`` are left
        out (they change no result, so a rerun with a longer timeout still resumes its checkpoint)."""
        blob = json.dumps({k: v for k, v in self.as_dict().items() if k not in ("run", "notify")}, sort_keys=True)
        blob = blob.encode()
        return hashlib.sha256(blob).hexdigest()


def read_yaml(text: str) -> Any:
    """YAML as DVC reads params.yaml: YAML 1.2 through ruamel's safe loader (only true/false are booleans, so yes
    or no stay strings that strict validation then names; 1e-3 is a number; 010 is ten)."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and a YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. `headstart run --set train.epochs=3`")
    from ruamel.yaml import YAMLError

    try:
        value = read_yaml(raw) if raw.strip() else None
    except YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({exc})") from None
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``key.path=value`` override set (as ``dvc exp run -S``)."""
    result = json.loads(json.dumps(raw))
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    return result


def params_from_dict(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a raw dict; errors name each bad key and what is wrong with it."""
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: invalid parameters"]
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]).replace("validate_", "validate")
            given = err.get("input")
            shown = (
                f" (got {given!r})" if isinstance(given, str | int | float | bool) and err["type"] != "missing" else ""
            )
            lines.append(f"  {key}: {err['msg']}{shown}")
        raise ConfigError("\n".join(lines)) from None


def load_params_or_defaults(path: Path, overrides: list[str] | None = None) -> Params:
    """params.yaml when it exists, else the defaults (for commands that also work outside a workspace); with
    ``--set`` overrides applied either way."""
    if path.is_file():
        return load_params(path, overrides)
    return params_from_dict(apply_overrides({}, overrides or []), source="the defaults") if overrides else Params()


def load_params(path: Path | str = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read params.yaml, apply ``--set`` overrides, and validate."""
    from ruamel.yaml import YAMLError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: params file not found; run from the workspace's root (`headstart init DIR` makes one) or "
            "name the file: `headstart run --params FILE`"
        )
    try:
        raw = read_yaml(path.read_text()) or {}
    except YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return params_from_dict(apply_overrides(raw, overrides or []), source=str(path))
