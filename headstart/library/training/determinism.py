"""Every random draw of a training run, seeded from ``train.seed``; and torch's deterministic mode on request.

- Python, NumPy and torch in the training process: :func:`seed_everything`.
- The training augmentation (albumentations keeps its own generators and ignores the global seeds): one stream per
  (rank, loader worker), in ``headstart/library/data/loader.py``.
- ``train.deterministic``: torch's deterministic algorithms, cuDNN without autotuning and cuBLAS's fixed workspace
  (what CUDA needs to repeat a run bit for bit; the CPU kernels torch uses here already do at a fixed thread count).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator

import numpy as np

log = logging.getLogger(__name__)
CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = ":4096:8"  # torch's documented setting for deterministic cuBLAS (CUDA >= 10.2)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) in this process."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(on: bool, device_type: str) -> Iterator[None]:
    """``train.deterministic``: torch's deterministic algorithms (an op without one raises, naming itself), cuDNN
    deterministic and not autotuning; on CUDA also cuBLAS's fixed workspace, which must be set before its first
    use. Off (the default) leaves torch free to pick its fastest kernels. The previous settings come back on exit:
    a server process trains many runs."""
    import torch

    if not on:
        yield
        return
    cudnn = torch.backends.cudnn
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             cudnn.deterministic, cudnn.benchmark, os.environ.get(CUBLAS_WORKSPACE))  # fmt: skip
    if device_type == "cuda":
        os.environ.setdefault(CUBLAS_WORKSPACE, CUBLAS_DETERMINISTIC)
    torch.use_deterministic_algorithms(True)
    cudnn.deterministic, cudnn.benchmark = True, False
    log.info("train.deterministic: torch's deterministic algorithms on (%s)", device_type)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        cudnn.deterministic, cudnn.benchmark = saved[2], saved[3]
        if saved[4] is None:
            os.environ.pop(CUBLAS_WORKSPACE, None)


def training_environment(device_type: str, precision: str, world_size: int, deterministic: bool) -> dict:
    """What besides code, data, params and packages decides a model's exact bits: recorded in lineage, compared by
    ``headstart reproduce`` (another device type, thread count or world size changes the order of float sums)."""
    import platform

    import torch

    return {
        "device": device_type,
        "device_name": torch.cuda.get_device_name() if device_type == "cuda" else platform.processor() or "cpu",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the SIMD kernels torch picked (AVX2, ...)
        "precision": precision,
        "threads": torch.get_num_threads(),
        "world_size": world_size,
        "deterministic": deterministic,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
