"""A torch Dataset over the split table, and its DataLoader.

Every random draw of a training loader follows ``train.seed``: the order of each epoch (torch's
DistributedSampler, seeded with seed + epoch, also for a single process) and the augmentation of each image, drawn
from its own stream keyed by (seed, epoch, image). albumentations keeps its own generators and ignores the global
seeds; keying each draw by the image rather than by the worker that loads it means the workers never repeat each
other's draws, the number of workers does not change the model, and a training resumed after epoch k draws what an
uninterrupted one would have drawn from epoch k + 1 on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from headstart.library.data.images import load_rgb_array
from headstart.library.data.transforms import seed_augmentations


def augmentation_seed(seed: int, epoch: int, image: int) -> int:
    """The seed of one image's augmentation in one epoch, mixed by NumPy's ``SeedSequence`` (neighbouring keys give
    unrelated streams)."""
    return int(np.random.SeedSequence([seed, epoch, image]).generate_state(1)[0])


class ImageTable(Dataset):
    """Images listed in a split table (``file``, ``label``), decoded, normalised to RGB and transformed.

    With ``seed`` (a training set), the transform draws from the stream of (seed, epoch, image): the loader asks
    for ``epoch * len(table) + image`` (see :class:`EpochIndexed`), so the epoch reaches persistent workers too."""

    def __init__(self, table: pd.DataFrame, classes: list[str], transform: A.Compose, seed: int | None = None) -> None:
        self.files = [Path(f) for f in table["file"]]
        index = {name: i for i, name in enumerate(classes)}
        self.targets = [index[label] for label in table["label"]]
        self.transform, self.seed = transform, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int) -> tuple[torch.Tensor, int]:
        epoch, i = divmod(key, len(self.files))
        if self.seed is not None:
            seed_augmentations(self.transform, augmentation_seed(self.seed, epoch, i))
        image = self.transform(image=load_rgb_array(self.files[i]))["image"]
        return image, self.targets[i]


class EpochIndexed(Sampler[int]):
    """Torch's DistributedSampler (each rank its share, reshuffled by seed + epoch), yielding ``epoch * n + i`` for
    its index ``i``: :class:`ImageTable` reads the epoch from the key."""

    def __init__(self, inner: DistributedSampler, size: int) -> None:
        self.inner, self.size, self.epoch = inner, size, 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch about to be drawn (order and augmentations)."""
        self.inner.set_epoch(epoch)
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return (self.epoch * self.size + i for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def make_loader(
    dataset: ImageTable,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
    collate_fn: Callable | None = None,
) -> DataLoader:
    """A DataLoader whose workers stay alive across epochs. ``shuffle`` (training): an :class:`EpochIndexed` sampler
    seeded with ``seed`` (call its ``set_epoch`` each epoch); ``shard`` = (rank, world size): each rank reads its
    own share of the images. Unshuffled loaders read every image in order. ``collate_fn``: torch's default when
    None.

    Shuffled (training) loaders drop a ragged last batch when there is more than one batch: a batch of one
    image breaks BatchNorm in training mode.
    """
    rank, size = shard
    sampler = None
    if shuffle:
        inner = DistributedSampler(dataset, num_replicas=size, rank=rank, shuffle=True, seed=seed)
        sampler = EpochIndexed(inner, len(dataset))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),  # the workers' own torch/NumPy/Python seeds
        drop_last=shuffle and len(sampler if sampler is not None else dataset) > batch_size,
        pin_memory=torch.cuda.is_available(),  # page-locked batches copy to the GPU asynchronously
        collate_fn=collate_fn,
    )
