"""What a saved model is (its ``config.json``), readable without torch: the registry, the gate's checks and the
reports read configs without building a network (``saved_model`` builds one)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headstart.ground.errors import WeightsError
from headstart.library.data.transforms import Preprocessing

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ModelConfig:
    """What a saved model is: architecture, head, freezing, classes, preprocessing, scenario and lineage."""

    backbone: str
    classes: list[str]
    head: dict[str, Any]
    freeze_stages: int
    bn: str
    preprocessing: dict[str, Any]
    scenario: str
    lineage: dict[str, Any]
    freeze_patterns: list[str] = field(default_factory=list)
    classifier: str | None = None  # the scikit-learn classifier of the features scenario
    classifier_c: float | None = None  # its C (chosen by cross-validation under classifier_c: auto)
    feature_stages: int = 0  # the features scenario's features: 0 the classifier's input, n the last n stages
    features_fit: str | None = None  # the features scenario's fitted rows: train | train+val

    @property
    def pre(self) -> Preprocessing:
        """The preprocessing as a typed value."""
        p = self.preprocessing
        return Preprocessing(p["input_size"], tuple(p["mean"]), tuple(p["std"]), p["interpolation"])


def read_config(model_dir: Path) -> ModelConfig:
    """The config of a saved model."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise WeightsError(f"{path}: not found; {model_dir} is not a saved model folder")
    return ModelConfig(**json.loads(path.read_text()))
