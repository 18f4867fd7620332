"""Checking pretrained weights the direct way: ImageNet top-5 on real photos."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from headstart.ground.errors import DataError
from headstart.library.data.images import to_rgb
from headstart.library.models.weights import create_with_weights


def imagenet_top5(architecture: str, weights: str, images: list[Path]) -> list[list[tuple[int, str, float]]]:
    """For each image, the five most likely ImageNet classes as ``(index, label, probability)``."""
    from timm.data import ImageNetInfo, create_transform, resolve_data_config

    model = create_with_weights(architecture, weights).eval()
    transform = create_transform(**resolve_data_config({}, model=model))  # timm's own eval preprocessing
    info = ImageNetInfo()
    results = []
    for path in images:
        if not path.is_file():
            raise DataError(f"{path}: image not found")
        with Image.open(path) as image:
            batch = transform(to_rgb(image))[None]
        with torch.inference_mode():
            probs = model(batch).softmax(1)[0]
        top = probs.topk(5)
        results.append(
            [(int(i), info.index_to_description(int(i)), round(float(p), 4)) for p, i in zip(*top, strict=True)]
        )
    return results
