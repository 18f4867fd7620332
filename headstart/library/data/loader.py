"""A torch Dataset over the split table, and its DataLoader."""

from __future__ import annotations

import functools
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from headstart.library.data.images import load_rgb_array
from headstart.library.data.transforms import seed_augmentations


class ImageTable(Dataset):
    """Images listed in a split table (``file``, ``label``), decoded, normalised to RGB and transformed."""

    def __init__(self, table: pd.DataFrame, classes: list[str], transform: A.Compose) -> None:
        self.files = [Path(f) for f in table["file"]]
        index = {name: i for i, name in enumerate(classes)}
        self.targets = [index[label] for label in table["label"]]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.transform(image=load_rgb_array(self.files[i]))["image"]
        return image, self.targets[i]


def augmentation_stream_seed(seed: int, rank: int = 0, worker: int | None = None) -> int:
    """The seed of one augmentation stream: training seed, rank and loader worker (None: the images load in the
    training process itself) mixed by NumPy's ``SeedSequence``, so neighbouring keys give unrelated streams."""
    key = [seed, rank] if worker is None else [seed, rank, worker + 1]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def seed_worker(worker_id: int, seed: int, rank: int) -> None:
    """A loader worker's ``worker_init_fn``: its copy of the dataset's transform gets its own stream (the workers
    start from copies of one pipeline, which would otherwise draw the same augmentations in every worker)."""
    info = torch.utils.data.get_worker_info()
    seed_augmentations(info.dataset.transform, augmentation_stream_seed(seed, rank, worker_id))


def make_loader(
    dataset: ImageTable,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> DataLoader:
    """A seeded DataLoader; workers stay alive across epochs. ``shard`` = (rank, world size): across training
    processes each rank reads its own share of the images (torch's DistributedSampler, reshuffled per epoch).

    Everything it draws follows ``seed``: the order (its generator, or the sampler's seed), torch's own seeds
    of the workers (from that generator), and the augmentation streams, one per rank and worker (or one per rank
    when the images load in this process).

    Shuffled (training) loaders drop a ragged last batch when there is more than one batch: a batch of one
    image breaks BatchNorm in training mode.
    """
    rank, size = shard
    sampler = None
    if size > 1:
        sampler = DistributedSampler(dataset, num_replicas=size, rank=rank, shuffle=shuffle, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    if num_workers == 0:
        seed_augmentations(dataset.transform, augmentation_stream_seed(seed, rank))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=generator,
        worker_init_fn=functools.partial(seed_worker, seed=seed, rank=rank) if num_workers else None,
        drop_last=shuffle and len(sampler if sampler is not None else dataset) > batch_size,
        pin_memory=torch.cuda.is_available(),  # page-locked batches copy to the GPU asynchronously
    )
