"""Where this process stands among training processes, read from the environment torchrun sets: no torch
imported, so ``headstart step NAME`` can ask before it knows whether it trains."""

from __future__ import annotations

import os
from dataclasses import dataclass

FLOW_RUN_ENV = "HEADSTART_FLOW_RUN_ID"  # the launching flow run, recorded in the ranks' lineage


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that evaluates, checkpoints, saves and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there are other ranks to talk to."""
        return self.size > 1


def under_torchrun() -> bool:
    """Whether torchrun started this process (it sets these for every rank)."""
    return "TORCHELASTIC_RUN_ID" in os.environ and "WORLD_SIZE" in os.environ


def current() -> World:
    """This process's rank and world size, from the environment torchrun sets."""
    if not under_torchrun():
        return World()
    return World(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
