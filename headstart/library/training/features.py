"""Frozen-backbone features, per image, through the feature store.

Extraction runs the eval transform, always in fp32 with TF32 off and cuDNN's algorithm choice fixed, so stored
features do not depend on which run computed them; on the CPU through ONNX Runtime where the network exports
(:mod:`onnx_features`: 3-6.6x torch's speed here). :func:`features_for` reads what the store holds and extracts
only the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from headstart.ground import progress
from headstart.ground.params import Params
from headstart.ground.paths import cache_dir
from headstart.library.data.loader import ImageTable, make_loader
from headstart.library.data.transforms import Preprocessing, build_transform
from headstart.library.models.backbones import check_feature_stages, pooled_features
from headstart.library.models.weights import weights_digest
from headstart.library.training.accelerator import resolve_accelerator
from headstart.library.training.feature_store import ENGINE, Extractor, FeatureStore
from headstart.library.training.onnx_features import EngineFailed, cpu_session, forget_session, run_session

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSet:
    """Features of every row of a table, in the table's order, and how many images were extracted for them."""

    features: np.ndarray
    extracted: int  # distinct images extracted now (the rest came from the store)
    seconds: float  # time spent extracting
    engine: str = "torch"  # what computed them (now or when stored): onnxruntime | torch

    @property
    def from_cache(self) -> bool:
        """Whether nothing had to be extracted."""
        return self.extracted == 0


def extract(
    model: nn.Module,
    table: pd.DataFrame,
    extractor: Extractor,
    batch_size: int,
    workers: int,
    device: str = "auto",
    session: InferenceSession | None = None,
) -> np.ndarray:
    """``extractor``'s pooled features of every image (eval transform, no augmentation), in table order. Always
    fp32 (cached features must not depend on the machine's precision); through ``session`` (ONNX Runtime) when
    given (fed resized uint8 pixels: it normalises in its graph), else torch, on the GPU when ``device`` resolves
    to one. Decoding overlaps the forward passes when ``workers`` > 0."""
    transform = build_transform(extractor.pre, normalise=session is None)
    dataset = ImageTable(table, sorted(set(table["label"])), transform)
    loader = make_loader(dataset, batch_size, False, workers, collate_fn=StackInto() if workers == 0 else None)
    accelerator = resolve_accelerator("cpu" if session else device, "fp32")
    accelerator.prepare(model)
    model.eval()
    features, done = np.empty((0, 0), dtype=np.float32), 0  # filled batch by batch: no list of chunks to concatenate
    with torch.inference_mode(), _exact_fp32():
        for batch in progress.iterate(loader, "extracting features", len(loader)):
            if session is not None:
                chunk = run_session(session, batch[0])
            else:
                images, _ = accelerator.to_device(*batch)
                chunk = pooled_features(model, images, extractor.stages, extractor.pool).float().cpu()
            if done == 0:  # the width is the first batch's
                features = np.empty((len(dataset), chunk.shape[1]), dtype=np.float32)
            features[done : done + len(chunk)] = chunk.numpy()
            done += len(chunk)
    model.to("cpu")
    return features


class StackInto:
    """torch's collate for (image, target) pairs, but every batch's images stacked into one buffer kept between
    batches, for a consumer that is done with a batch before asking for the next (extraction: its outputs are new
    tensors). A fresh 38 MB batch (64 images at 224 px) is beyond glibc's mmap threshold, so each one was new
    pages: stacking cost 0.27-0.29 ms an image, into the kept buffer 0.08. In the process only: loader workers
    send their batches through shared memory, which torch's own collate allocates."""

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None

    def __call__(self, items: list[tuple[torch.Tensor | np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = [torch.as_tensor(image) for image, _ in items]  # uint8 pixels come as arrays: no copy
        shape = (len(images), *images[0].shape)
        if self.buffer is None or self.buffer.shape[1:] != shape[1:] or len(self.buffer) < len(images):
            self.buffer = torch.empty(shape, dtype=images[0].dtype)
        batch = torch.stack(images, out=self.buffer[: len(images)])
        return batch, torch.tensor([target for _, target in items])


def feature_width(model: nn.Module, extractor: Extractor) -> int:
    """How many numbers ``extractor`` gives per image (one forward pass of a blank image)."""
    size = extractor.pre.input_size
    with torch.inference_mode():
        blank = torch.zeros(1, 3, size, size).contiguous(memory_format=torch.channels_last)
        return int(pooled_features(model.eval(), blank, extractor.stages, extractor.pool).shape[1])


@contextmanager
def _exact_fp32() -> Iterator[None]:
    """TF32 off and cuDNN's algorithm choice fixed for the extraction: with TF32, GPU matmuls and convolutions
    round to 10 mantissa bits; with benchmarking, cuDNN may pick another algorithm on the next run. Stored
    features must be the same whichever run computed them (on one device type: the store keys by it)."""
    cudnn = torch.backends.cudnn
    saved = (torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic)
    torch.backends.cuda.matmul.allow_tf32 = cudnn.allow_tf32 = cudnn.benchmark = False
    cudnn.deterministic = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic = saved


def feature_digest(model: nn.Module) -> str:
    """sha256 of the tensors that compute the features: the network without its classifier and BatchNorm
    counters (frozen BatchNorm drops them), so a pretrained model, its frozen headless extractor and a saved
    features-scenario model of the same weights agree."""
    classifier = model.get_classifier()
    head = next((f"{name}." for name, module in model.named_modules() if module is classifier and name), None)

    def skip(key: str) -> bool:
        return key.endswith("num_batches_tracked") or (head is not None and key.startswith(head))

    return weights_digest(model, skip)


def extractor_of(model: nn.Module, backbone: str, pre: Preprocessing, pool: str, stages: int = 0) -> Extractor:
    """The store's identity of this network's features (``stages``: see ``backbones.pooled_features``)."""
    check_feature_stages(model, backbone, stages)
    return Extractor(backbone, feature_digest(model), pre, pool, stages)


def feature_store(params: Params) -> FeatureStore:
    """The store named by ``train.feature_cache`` (default: the user cache's ``feature-store/``), capped at
    ``train.feature_cache_max_gb``."""
    p = params.train
    directory = Path(p.feature_cache) if p.feature_cache else cache_dir() / "feature-store"
    return FeatureStore(directory, int(p.feature_cache_max_gb * 1e9))


def features_for(
    model: nn.Module,
    table: pd.DataFrame,
    extractor: Extractor,
    store: FeatureStore | None,
    batch_size: int,
    workers: int,
    device: str = "auto",
) -> FeatureSet:
    """Features of every row of ``table`` (which has ``sha256``): those in the store read back, the other
    images extracted once each (a duplicate image is extracted once) and stored."""
    kind = resolve_accelerator(device, "fp32").device.type
    session = cpu_session(model, extractor) if kind == "cpu" else None
    if session is not None:
        try:
            return _features_through(model, table, replace(extractor, device=ENGINE), store, batch_size, workers,
                                     device, session)  # fmt: skip
        except EngineFailed as exc:  # its vectors so far are not stored: torch's are keyed apart
            log.warning("%s: ONNX Runtime failed (%s); extracting with torch", extractor.backbone, exc)
            forget_session(extractor)
    return _features_through(model, table, replace(extractor, device=kind), store, batch_size, workers, device)


def _features_through(
    model: nn.Module,
    table: pd.DataFrame,
    extractor: Extractor,
    store: FeatureStore | None,
    batch_size: int,
    workers: int,
    device: str,
    session: InferenceSession | None = None,
) -> FeatureSet:
    """:func:`features_for` on one engine: ``extractor.device`` names it (its store key), ``session`` runs it.
    One matrix, allocated once: stored vectors are read into their rows, the rest extracted into theirs."""
    shas = table["sha256"].tolist()
    matrix = np.empty((len(shas), feature_width(model, extractor)), dtype=np.float32)  # ~5 kB an image
    filled = store.read_into(extractor, shas, matrix) if store is not None else np.zeros(len(shas), dtype=bool)
    missing = table[~filled].drop_duplicates("sha256")
    start = time.perf_counter()
    if len(missing):
        fresh = extract(model, missing, extractor, batch_size, workers, device, session)
        new = dict(zip(missing["sha256"], fresh, strict=True))
        if store is not None:
            store.save(extractor, new)
        if len(missing) == len(shas):  # every row extracted, each image once: those are the rows, in table order
            matrix = fresh
        else:
            for row in np.flatnonzero(~filled):  # an image listed twice fills both rows
                matrix[row] = new[shas[row]]
    seconds = time.perf_counter() - start
    log.info("features of %d images: %d from the store, %d extracted in %.1f s",
             len(set(shas)), len(set(shas)) - len(missing), len(missing), seconds)  # fmt: skip
    engine = ENGINE if extractor.device == ENGINE else "torch"
    return FeatureSet(matrix, len(missing), seconds, engine)


def frozen_backbone(
    backbone: str, weights: str, input_size: int | None, pool: str, stages: int = 0, preferred_size: bool = False
) -> tuple[nn.Module, Extractor]:
    """The pretrained backbone as a frozen feature extractor (classifier removed, ``pool`` pooling) and the
    identity of its features (``stages``: see ``backbones.pooled_features``). ``preferred_size``: ``input_size``
    is a preference (the health step's cheap resolution), dropped for a network that takes only its pretrained
    size (timm's ``fixed_input_size``: ViT, DeiT, Swin)."""
    from headstart.library.data.transforms import preprocessing_for
    from headstart.library.models.backbones import create_pretrained, freeze_all
    from headstart.library.models.presets import check_input_size

    model = create_pretrained(backbone, weights)
    if preferred_size and input_size is not None and model.pretrained_cfg.get("fixed_input_size"):
        log.info("%s takes only its pretrained input size: features at that size, not %d px", backbone, input_size)
        input_size = None
    pre = preprocessing_for(model, input_size)
    check_input_size(backbone, pre.input_size)
    model.reset_classifier(0, global_pool=pool)
    freeze_all(model)
    return model, extractor_of(model, backbone, pre, pool, stages)


def training_features(
    model: nn.Module, split: pd.DataFrame, extractor: Extractor, params: Params
) -> tuple[pd.DataFrame, FeatureSet]:
    """Features of the split's train and val rows (the rows, in feature order, and the features): the features
    scenario, the hybrid head start and the health step read the same store entries."""
    rows = split[split["split"].isin(["train", "val"])].reset_index(drop=True)
    p = params.train
    store = feature_store(params)
    return rows, features_for(model, rows, extractor, store, params.evaluate.batch_size, p.num_workers, p.device)
