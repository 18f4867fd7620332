"""Using a registered model: pull it (verified against its manifest), then classify images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from headstart.ground.errors import DataError
from headstart.ground.paths import cache_dir
from headstart.library.data.images import load_rgb_array
from headstart.library.data.transforms import build_transform
from headstart.library.models.saved_model import Predictor, load_predictor
from headstart.library.registry.registry import Registry


@dataclass(frozen=True)
class Prediction:
    """One image's most likely class."""

    image: str
    label: str
    probability: float


def pull_predictor(
    registry: Registry, ref: str, cache: Path | None = None, verify: bool = False
) -> tuple[str, Predictor]:
    """Resolve ``champion`` or a version id, pull it into ``cache/<version>`` (default: the user cache's
    ``models/<model>/``) and load it.

    A pull lands atomically only after every file matched the manifest. A cached pull is re-verified on every use:
    file sizes and the manifest's digest; every file's sha256 too with ``verify``.
    """
    cache = cache or cache_dir() / "models" / registry.model
    version = registry.resolve(ref)
    return version, load_predictor(registry.pull(version, cache / version, full_check=verify))


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given; folders searched recursively for files with an image extension Pillow knows, hidden files
    and folders skipped, in sorted order."""
    from PIL import Image

    extensions = set(Image.registered_extensions())
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        for candidate in sorted(path.rglob("*")):
            hidden = any(part.startswith(".") for part in candidate.relative_to(path).parts)
            if candidate.is_file() and not hidden and candidate.suffix.lower() in extensions:
                found.append(candidate)
    return found


def predict_images(predictor: Predictor, images: list[Path], batch_size: int = 32) -> list[Prediction]:
    """Class and probability per image, with the preprocessing the model was trained with."""
    transform = build_transform(predictor.config.pre)
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise DataError(f"images not found: {missing}")
    results: list[Prediction] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = torch.stack([transform(image=load_rgb_array(p))["image"] for p in chunk])
        proba = predictor.predict_proba(batch)
        for path, row in zip(chunk, proba, strict=True):
            best = int(row.argmax())
            results.append(Prediction(str(path), predictor.config.classes[best], float(row[best])))
    return results
