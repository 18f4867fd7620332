"""The model folder: ``model.safetensors`` plus ``config.json`` holding everything needed to rebuild it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from headstart.config import HeadParams
from headstart.errors import WeightsError
from tasks.augment import Preprocessing
from tasks.backbone import attach_head, create_pretrained, freeze_stages, load_checked

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ModelConfig:
    """What a saved model is: architecture, head, classes, preprocessing and lineage."""

    backbone: str
    classes: list[str]
    head: dict[str, Any]
    freeze_stages: int
    bn: str
    preprocessing: dict[str, Any]
    scenario: str
    lineage: dict[str, Any]

    @property
    def pre(self) -> Preprocessing:
        """The preprocessing as a typed value."""
        p = self.preprocessing
        return Preprocessing(p["input_size"], tuple(p["mean"]), tuple(p["std"]), p["interpolation"])


def save_model(model: nn.Module, config: ModelConfig, out_dir: Path) -> Path:
    """Write weights (safetensors, contiguous tensors) and config; returns the folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, out_dir / WEIGHTS_FILE)
    (out_dir / CONFIG_FILE).write_text(json.dumps(config.__dict__, indent=2))
    return out_dir


def read_config(model_dir: Path) -> ModelConfig:
    """The config of a saved model."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise WeightsError(f"{path}: not found; {model_dir} is not a saved model folder")
    return ModelConfig(**json.loads(path.read_text()))


def load_model(model_dir: Path) -> tuple[nn.Module, ModelConfig]:
    """Rebuild the architecture from the config and load the weights strictly (no pretrained download)."""
    config = read_config(model_dir)
    model = create_pretrained(config.backbone, "none")
    attach_head(model, len(config.classes), HeadParams(**config.head))
    freeze_stages(model, config.freeze_stages, config.bn)  # same modules as in training (FrozenBatchNorm)
    load_checked(model, load_file(model_dir / WEIGHTS_FILE), str(model_dir / WEIGHTS_FILE))
    return model.eval(), config
