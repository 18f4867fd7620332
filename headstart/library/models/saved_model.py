"""The model folder, one kind for every scenario: ``model.safetensors`` + ``config.json``
(+ ``classifier.skops`` for the features scenario), and the predictor rebuilt from it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.pipeline import Pipeline
from torch import nn

from headstart.ground.params import HeadParams
from headstart.library.models.backbones import attach_head, create_pretrained, freeze, freeze_all, pooled_features
from headstart.library.models.classical import load_classifier, probabilities, save_classifier
from headstart.library.models.model_config import CONFIG_FILE, WEIGHTS_FILE, ModelConfig, read_config
from headstart.library.models.weights import load_checked


@dataclass
class Predictor:
    """A saved model ready to score batches: the torch network, plus the classifier for ``features``."""

    config: ModelConfig
    network: nn.Module
    classifier: Pipeline | None = None

    def predict_proba(self, images: torch.Tensor) -> np.ndarray:
        """Class probabilities (rows = images, columns = ``config.classes``)."""
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.classifier is None:
                return self.network(images).softmax(1).float().numpy()
            features = pooled_features(self.network, images, self.config.feature_stages, self.config.head["pool"])
            features = features.float().numpy()
        return probabilities(self.classifier, features, len(self.config.classes))


def host_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's tensors, detached, on the CPU and contiguous: what safetensors can write."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_model(model: nn.Module, config: ModelConfig, out_dir: Path, classifier: Pipeline | None = None) -> Path:
    """Write weights (safetensors), config and, for ``features``, the skops classifier; returns the folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(host_state_dict(model), out_dir / WEIGHTS_FILE)
    if classifier is not None:
        save_classifier(classifier, out_dir)
    (out_dir / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2))
    return out_dir


def build_network(config: ModelConfig) -> nn.Module:
    """The architecture exactly as trained (head, frozen modules), without weights."""
    model = create_pretrained(config.backbone, "none")
    if config.scenario == "features":
        model.reset_classifier(0, global_pool=config.head["pool"])
        freeze_all(model)
    else:
        attach_head(model, len(config.classes), HeadParams(**config.head))
        freeze(model, config.freeze_stages, config.bn, config.freeze_patterns)  # same FrozenBatchNorm swaps
    return model


def load_predictor(model_dir: Path) -> Predictor:
    """Rebuild a saved model and load its weights strictly (and its classifier with trusted types only)."""
    config = read_config(model_dir)
    network = build_network(config)
    load_checked(network, load_file(model_dir / WEIGHTS_FILE), str(model_dir / WEIGHTS_FILE))
    classifier = load_classifier(model_dir) if config.scenario == "features" else None
    return Predictor(config, network.eval().to(memory_format=torch.channels_last), classifier)
