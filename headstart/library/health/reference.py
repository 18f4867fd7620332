"""The drift reference: a seeded sample of a training set's backbone features, registered with each version.

The next run compares its own training features with the champion's sample, from the registry alone (no access to
the old data needed). Stored as safetensors (never pickled); what the features depend on is in the metadata, and a
sample from another backbone, weights or preprocessing is not compared.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

SAMPLE = 1000  # feature vectors kept


@dataclass(frozen=True)
class Reference:
    """Features (rows), their class indices into ``classes``, and what the features depend on."""

    features: np.ndarray
    labels: np.ndarray
    classes: list[str]
    extractor: dict  # backbone, weights_digest, preprocessing, pool

    def comparable_to(self, extractor: dict) -> bool:
        """Whether features from ``extractor`` live in the same space as these."""
        same = json.dumps(self.extractor, sort_keys=True) == json.dumps(extractor, sort_keys=True)
        return same  # compared as JSON: a stored tuple comes back as a list


def sample_reference(
    features: np.ndarray, labels: np.ndarray, classes: list[str], extractor: dict, seed: int = 0
) -> Reference:
    """A seeded sample of at most :data:`SAMPLE` rows."""
    rows = np.random.default_rng(seed).permutation(len(features))[:SAMPLE]
    rows.sort()
    return Reference(features[rows].astype(np.float32), labels[rows].astype(np.int64), list(classes), extractor)


def to_bytes(reference: Reference) -> bytes:
    """safetensors bytes with the classes and extractor as metadata."""
    tensors = {"features": torch.from_numpy(reference.features), "labels": torch.from_numpy(reference.labels)}
    metadata = {"classes": json.dumps(reference.classes), "extractor": json.dumps(reference.extractor, sort_keys=True)}
    return save(tensors, metadata=metadata)


def from_bytes(data: bytes) -> Reference:
    """Inverse of :func:`to_bytes` (safetensors: no code runs on load). ValueError when it is not one."""
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as handle:  # safe_open reads metadata from a file
        handle.write(data)
        handle.flush()
        try:
            with safe_open(handle.name, framework="pt") as entry:
                metadata = entry.metadata() or {}
                features, labels = entry.get_tensor("features"), entry.get_tensor("labels")
            reference = Reference(
                features.numpy(), labels.numpy(), json.loads(metadata["classes"]), json.loads(metadata["extractor"])
            )
        except Exception as exc:  # safetensors raises its own error types for a foreign or torn file
            raise ValueError(f"not a drift reference ({exc})") from None
    _check(reference)
    return reference


def _check(reference: Reference) -> None:
    """A reference comes from the registry: its shapes, types and indices are checked before any use."""
    features, labels, classes = reference.features, reference.labels, reference.classes
    if features.ndim != 2 or features.dtype.kind != "f" or len(features) < 2 or not np.isfinite(features).all():
        raise ValueError(f"its features are not a finite 2-D float array of 2 or more rows ({features.shape})")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(features):
        raise ValueError(f"its labels are not one integer per feature row ({labels.shape}, {labels.dtype})")
    if not (
        isinstance(classes, list) and all(isinstance(c, str) for c in classes) and len(set(classes)) == len(classes)
    ):
        raise ValueError("its classes are not a list of distinct names")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"its labels fall outside its {len(classes)} classes")
    if not isinstance(reference.extractor, dict):
        raise ValueError("its extractor is not a mapping")
