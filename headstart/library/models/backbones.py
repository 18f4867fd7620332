"""Backbones: new heads, freezing, and feature extraction (the presets of the seven families: ``presets``)."""

from __future__ import annotations

import logging
import re

import torch
from torch import nn

from headstart.ground.errors import ConfigError
from headstart.ground.params import HeadParams
from headstart.library.models.weights import create_with_weights

log = logging.getLogger(__name__)


def create_pretrained(backbone: str, weights: str) -> nn.Module:
    """The backbone with its ImageNet classifier and the declared weights (never an unplanned download)."""
    return create_with_weights(backbone, weights)


class MLPHead(nn.Module):
    """Hidden layers then the output layer, in place of a timm classifier.

    A module of its own rather than a bare ``nn.Sequential``: timm's group matchers flatten Sequential
    children, and some (inception_v3) then no longer find their classifier by name.
    """

    def __init__(self, in_features: int, hidden: list[int], num_classes: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def attach_head(model: nn.Module, num_classes: int, head: HeadParams) -> None:
    """Replace the classifier: pooling and dropout via timm, optional hidden layers before the output."""
    model.reset_classifier(num_classes, global_pool=head.pool)
    if hasattr(model, "drop_rate"):
        model.drop_rate = head.dropout  # timm applies it between pooling and classifier
    if not head.hidden:
        return
    mlp = MLPHead(model.get_classifier().in_features, head.hidden, num_classes, head.dropout)
    parent, _, leaf = model.pretrained_cfg["classifier"].rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, mlp)


def create_classifier(backbone: str, weights: str, num_classes: int, head: HeadParams) -> nn.Module:
    """A pretrained backbone with a new head of ``num_classes`` outputs.

    Weights are loaded while the model still has its ImageNet classifier, so the load is checked key by key;
    the head is replaced afterwards.
    """
    model = create_pretrained(backbone, weights)
    attach_head(model, num_classes, head)
    return model


def stage_modules(model: nn.Module, stages: int) -> list[list[str]]:
    """Module names of each of the first ``stages`` coarse groups of timm's group matcher, stem first."""
    from timm.models import group_modules

    if stages <= 0:
        return []
    groups = group_modules(model, model.group_matcher(coarse=True))
    return [groups[group_id] for group_id in sorted(groups)[:stages]]


def modules_to_freeze(model: nn.Module, stages: int = 0, patterns: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Module names for the first ``stages`` coarse groups of timm's group matcher (stem = stage 0) plus
    every module whose name matches one of ``patterns`` (regular expressions, ``re.match``)."""
    names = [name for stage in stage_modules(model, stages) for name in stage]
    if patterns:
        compiled = [re.compile(p) for p in patterns]
        matched = [n for n, _ in model.named_modules() if n and any(c.match(n) for c in compiled)]
        names += [n for n in matched if n not in names]
    # Keep the outermost names only: freezing a parent covers its children.
    return [n for n in names if not any(n.startswith(f"{other}.") for other in names if other != n)]


def freeze(model: nn.Module, stages: int, bn: str, patterns: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Freeze early stages and/or modules by name with timm's ``freeze``; returns the frozen module names.

    ``bn="frozen"`` also fixes BatchNorm running statistics (timm swaps in FrozenBatchNorm2d);
    ``bn="trained"`` keeps updating the statistics while the affine weights stay fixed.
    """
    from timm.utils import freeze as timm_freeze

    names = modules_to_freeze(model, stages, patterns)
    if names:
        timm_freeze(model, names, include_bn_running_stats=(bn == "frozen"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "froze %d stage(s) + %d pattern(s): %d modules; BatchNorm statistics %s; %d trainable parameters",
        stages,
        len(patterns),
        len(names),
        bn,
        trainable,
    )
    return names


def freeze_all(model: nn.Module) -> None:
    """Freeze every parameter and BatchNorm statistic: the backbone as a fixed feature extractor."""
    from timm.utils import freeze as timm_freeze

    timm_freeze(model, [n for n, _ in model.named_children()], include_bn_running_stats=True)


def pooled_features(model: nn.Module, images: torch.Tensor, stages: int = 0, pool: str = "avg") -> torch.Tensor:
    """``stages == 0``: what the classifier sees (timm's ``forward_head(..., pre_logits=True)``); else the last
    ``stages`` stages' feature maps (timm's ``forward_intermediates``), each pooled (``pool``, timm's adaptive
    pooling) and concatenated: mid-level features, which transfer better to images unlike ImageNet's."""
    if stages == 0:
        return model.forward_head(model.forward_features(images), pre_logits=True)
    from timm.layers import SelectAdaptivePool2d

    pooling = SelectAdaptivePool2d(pool_type=pool, flatten=True)
    maps = model.forward_intermediates(images, indices=stages, intermediates_only=True)
    return torch.cat([pooling(m) for m in maps], 1)


def check_feature_stages(model: nn.Module, backbone: str, stages: int) -> None:
    """``model.feature_stages`` needs timm's ``forward_intermediates`` and at most as many stages as there are."""
    if stages == 0:
        return
    info = getattr(model, "feature_info", None)
    if not hasattr(model, "forward_intermediates") or info is None:
        raise ConfigError(f"model.feature_stages={stages}: {backbone} has no forward_intermediates in timm; use 0")
    if stages > len(info):
        raise ConfigError(f"model.feature_stages={stages}: {backbone} has {len(info)} feature stages")
