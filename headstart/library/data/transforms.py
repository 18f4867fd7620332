"""Image transforms: the params' albumentations pipeline, then resize/normalise/tensor from the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from headstart.ground.errors import ConfigError
from headstart.ground.params import Params, check_augment_shape

if TYPE_CHECKING:  # albumentations imports torch: loaded where a pipeline is built, not where one is described
    import albumentations as A


@dataclass(frozen=True)
class Preprocessing:
    """What the model expects: recorded in the model config so predict uses exactly the same."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def preprocessing_for(model: Any, input_size: int | None) -> Preprocessing:
    """Normalisation from timm's data config for this model; size from params or the pretrained size."""
    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=model)
    size = input_size or int(config["input_size"][-1])
    return Preprocessing(size, tuple(config["mean"]), tuple(config["std"]), str(config["interpolation"]))


def _transform_names(node: Any) -> list[str]:
    """Every ``__class_fullname__`` in a serialised albumentations pipeline, outermost first."""
    if isinstance(node, dict):
        own = [node["__class_fullname__"]] if isinstance(node.get("__class_fullname__"), str) else []
        return own + [name for child in node.values() for name in _transform_names(child)]
    if isinstance(node, list):
        return [name for child in node for name in _transform_names(child)]
    return []


def build_augmentations(serialised: dict[str, Any]) -> A.BasicTransform:
    """Rebuild a serialised pipeline with albumentations' own ``from_dict``; a bad entry is a ValueError naming
    the transform (and what albumentations said)."""
    import albumentations as A
    from albumentations.core.serialization import SERIALIZABLE_REGISTRY

    check_augment_shape(serialised)  # the same shape rules as params; then albumentations judges the names
    unknown = [name for name in _transform_names(serialised["transform"]) if name not in SERIALIZABLE_REGISTRY]
    if unknown:
        raise ValueError(f"unknown albumentations transform(s) {unknown}; see albumentations' transform list")
    try:
        return A.from_dict(serialised)
    except Exception as exc:  # from_dict raises many types for a bad entry
        raise ValueError(f"not a valid albumentations pipeline ({type(exc).__name__}: {exc})") from None


def load_augmentations(serialised: dict[str, Any]) -> A.BasicTransform | None:
    """Rebuild the params' pipeline with albumentations' own deserialiser."""
    if not serialised:
        return None
    try:
        return build_augmentations(serialised)
    except ValueError as exc:
        raise ConfigError(f"augment: {exc}") from None


def check_augmentations(params: Params) -> None:
    """Build the params' augmentation pipeline once, so an unknown transform or a bad argument is a ConfigError
    naming it before anything trains (params validation checks only its shape, without albumentations)."""
    load_augmentations(params.augment)


def build_transform(
    pre: Preprocessing, augment: dict[str, Any] | None = None, normalise: bool = True, chw: bool = False
) -> A.Compose:
    """Augmentations (training only), then resize, normalise and convert to a CHW tensor. ``normalise=False``
    stops at the resized uint8 pixels: HWC arrays for an engine that normalises inside its graph, or with
    ``chw=True`` CHW uint8 tensors for a loader that normalises on the GPU (a quarter of the bytes to move)."""
    import albumentations as A
    import cv2
    from albumentations.pytorch import ToTensorV2

    steps: list[Any] = []
    if augment and (pipeline := load_augmentations(augment)) is not None:
        steps.append(pipeline)
    interpolation = cv2.INTER_CUBIC if pre.interpolation == "bicubic" else cv2.INTER_LINEAR
    steps.append(A.Resize(pre.input_size, pre.input_size, interpolation=interpolation))
    if normalise:
        steps += [A.Normalize(mean=pre.mean, std=pre.std, max_pixel_value=255.0), ToTensorV2()]
    elif chw:
        steps.append(ToTensorV2())
    return A.Compose(steps)


def seed_augmentations(transform: A.BasicTransform, seed: int) -> None:
    """Give a pipeline one random stream, shared by all its transforms in order of their draws.

    Not albumentations' ``set_random_seed``: that seeds every transform with the same number, so two sibling
    transforms with the same ``p`` fire together on every image (measured: HorizontalFlip and VerticalFlip at
    p=0.5 agreed on 200 of 200 images; with one shared stream, 91 of 200)."""
    import random

    import numpy as np

    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def augmentation_draws(images: list[Any], augment: dict[str, Any], variants: int = 5, seed: int = 0) -> list[list[Any]]:
    """For each image: the original, then ``variants`` draws of the params' pipeline (seeded: the same preview
    for the same params)."""
    pipeline = load_augmentations(augment)
    if pipeline is not None:
        seed_augmentations(pipeline, seed)
    return [[image] + [pipeline(image=image)["image"] if pipeline else image for _ in range(variants)]
            for image in images]  # fmt: skip
