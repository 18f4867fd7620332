"""Where and how training runs: the device, bf16 autocast and optional torch.compile, from params and the machine.

``train.device: auto`` trains on CUDA when torch sees a GPU (a worker on the ``gpu`` pool) and on the CPU otherwise;
``train.precision: auto`` is bf16 autocast on GPUs that support it and full fp32 elsewhere (bf16 on a CPU is
usually slower than fp32). Weights stay fp32 and channels_last either way; the trained model comes back on the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from headstart.ground.errors import ConfigError

if TYPE_CHECKING:
    from headstart.library.data.transforms import Preprocessing


@dataclass(frozen=True)
class Accelerator:
    """The resolved training placement."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # None: full precision
    compile: bool
    # on CUDA the loader's workers stop at uint8 pixels and feed() normalises whole batches on the device: the CPU
    # side was the bottleneck there (measured on an H200: a float loader fed 1,219 img/s at 224 px to a step that
    # takes 4,600); on the CPU the workers normalise, as before
    normalises_pixels: bool = False

    def describe(self) -> str:
        """One line for the logs: what the run actually used."""
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        precision = "bf16 autocast" if self.autocast_dtype is torch.bfloat16 else "fp32"
        return f"training on {self.device} ({name}), {precision}, torch.compile {'on' if self.compile else 'off'}"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the forward pass and loss (a no-op at full precision)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def to_device(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch on the training device, images in channels_last (faster convolutions on GPU and CPU)."""
        non_blocking = self.device.type == "cuda"  # with pinned host memory, the copy overlaps compute
        images = images.to(self.device, non_blocking=non_blocking, memory_format=torch.channels_last)
        return images, targets.to(self.device, non_blocking=non_blocking)

    def feed(self, loader: Iterable, pre: Preprocessing) -> Iterable:
        """``loader`` as the training step reads it: on CUDA through timm's ``PrefetchLoader`` (the next batch is
        copied and normalised on a side stream while this one trains); elsewhere unchanged. The loader's transform
        must match ``normalises_pixels`` (``build_transform(..., normalise=not normalises_pixels, chw=True)``)."""
        if not self.normalises_pixels:
            return loader
        from timm.data.loader import PrefetchLoader

        return PrefetchLoader(loader, mean=pre.mean, std=pre.std, channels=3, device=self.device)

    def prepare(self, model: nn.Module, wrap: Callable[[nn.Module], nn.Module] | None = None) -> nn.Module:
        """Move ``model`` (in place) and return what to call for the forward pass: the model itself, wrapped
        (``wrap``: DDP across processes) and/or compiled. State dicts are always taken from ``model``, whose keys
        neither wrapper prefixes."""
        model.to(self.device, memory_format=torch.channels_last)
        if self.device.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
        forward = wrap(model) if wrap else model
        return torch.compile(forward) if self.compile else forward  # DDP first, then compile (torch's advice)


def resolve_accelerator(
    device: str = "auto", precision: str = "auto", compile: bool = False, local_rank: int = 0
) -> Accelerator:
    """Turn ``train.device`` / ``train.precision`` / ``train.compile`` into a placement this machine can run;
    ``local_rank``: which of this machine's GPUs (one per training process)."""
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
    if device == "cuda" and not has_cuda:
        raise ConfigError(
            f"train.device is cuda but torch {torch.__version__} sees no CUDA device "
            f"(built for CUDA {torch.version.cuda}); set train.device to auto or cpu, or run on the gpu pool"
        )
    placed = torch.device(device, local_rank) if device == "cuda" else torch.device(device)
    bf16_ok = placed.type == "cpu" or torch.cuda.is_bf16_supported()
    if precision == "bf16" and not bf16_ok:
        raise ConfigError(f"train.precision is bf16 but {torch.cuda.get_device_name(placed)} does not support bf16")
    if precision == "auto":
        precision = "bf16" if placed.type == "cuda" and bf16_ok else "fp32"
    return Accelerator(placed, torch.bfloat16 if precision == "bf16" else None, compile, placed.type == "cuda")
