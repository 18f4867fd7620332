"""Image transforms: the params' albumentations pipeline, then resize/normalise/tensor from the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

from headstart.ground.errors import ConfigError
from headstart.ground.params import build_augmentations


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


def load_augmentations(serialised: dict[str, Any]) -> A.BasicTransform | None:
    """Rebuild the params' pipeline with albumentations' own deserialiser."""
    if not serialised:
        return None
    try:
        return build_augmentations(serialised)
    except ValueError as exc:
        raise ConfigError(f"augment: {exc}") from None


def build_transform(pre: Preprocessing, augment: dict[str, Any] | None = None) -> A.Compose:
    """Augmentations (training only), then resize, normalise and convert to a CHW tensor."""
    steps: list[Any] = []
    if augment and (pipeline := load_augmentations(augment)) is not None:
        steps.append(pipeline)
    interpolation = cv2.INTER_CUBIC if pre.interpolation == "bicubic" else cv2.INTER_LINEAR
    steps += [
        A.Resize(pre.input_size, pre.input_size, interpolation=interpolation),
        A.Normalize(mean=pre.mean, std=pre.std, max_pixel_value=255.0),
        ToTensorV2(),
    ]
    return A.Compose(steps)


def augmentation_draws(images: list[Any], augment: dict[str, Any], variants: int = 5, seed: int = 0) -> list[list[Any]]:
    """For each image: the original, then ``variants`` draws of the params' pipeline (seeded: the same preview
    for the same params)."""
    pipeline = load_augmentations(augment)
    if pipeline is not None:
        pipeline.set_random_seed(seed)
    return [[image] + [pipeline(image=image)["image"] if pipeline else image for _ in range(variants)]
            for image in images]  # fmt: skip
