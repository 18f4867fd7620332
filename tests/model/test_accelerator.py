"""Training placement: device, bf16 autocast and the errors for what this machine cannot do. The CUDA path itself
runs only on a GPU machine (see docs/scale-out.md, "Training on a GPU"); here the same code runs on the CPU."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from headstart.ground.errors import ConfigError
from headstart.ground.params import load_params
from headstart.ground.run_folder import RunFolder
from headstart.library.data.loader import ImageTable, make_loader
from headstart.library.data.transforms import Preprocessing, build_transform
from headstart.library.training.accelerator import Accelerator, resolve_accelerator
from headstart.library.training.scenarios import train

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
HAS_CUDA = torch.cuda.is_available()


def test_auto_uses_the_gpu_only_when_torch_sees_one() -> None:
    auto = resolve_accelerator()
    assert auto.device.type == ("cuda" if HAS_CUDA else "cpu")
    assert auto.autocast_dtype == (torch.bfloat16 if HAS_CUDA and torch.cuda.is_bf16_supported() else None)
    assert resolve_accelerator("cpu", "auto").autocast_dtype is None  # fp32 on the CPU unless asked


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_cuda_requested_on_a_cpu_machine_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"train\.device is cuda but torch .* sees no CUDA device"):
        resolve_accelerator("cuda")


def test_bf16_autocast_trains_like_fp32_and_ships_fp32_weights(tiny_split, caplog) -> None:
    base, split = tiny_split(8, 2, 4)
    common = ["train.num_workers=0", "model.input_size=32", "train.batch_size=16", "train.scenario=finetune"]
    common += ["train.epochs=3", "train.device=cpu"]
    with caplog.at_level(logging.INFO, logger="headstart.library.training.epochs"):
        bf16 = train(split, load_params(REPO_PARAMS, [*common, "train.precision=bf16"]), RunFolder(base / "bf16"), {})
    assert "training on cpu (cpu), bf16 autocast" in caplog.text
    fp32 = train(split, load_params(REPO_PARAMS, [*common, "train.precision=fp32"]), RunFolder(base / "fp32"), {})
    losses = {name: [row["train_loss"] for row in run.history] for name, run in (("bf16", bf16), ("fp32", fp32))}
    assert all(math.isfinite(x) for x in losses["bf16"]) and losses["bf16"][-1] < losses["bf16"][0], losses
    assert all(abs(a - b) < 0.15 * b for a, b in zip(losses["bf16"], losses["fp32"], strict=True)), losses
    weights = load_file(bf16.model_dir / "model.safetensors")
    assert {tensor.dtype for tensor in weights.values() if tensor.is_floating_point()} == {torch.float32}


def test_pixels_normalised_on_the_device_match_the_workers_normalisation(tiny_split) -> None:
    """GPU workers' loaders stop at uint8 pixels and ``Accelerator.feed`` (timm's PrefetchLoader) normalises whole
    batches on the device: the batches training reads are the ones the CPU path's workers normalise themselves.
    Run here on the CPU device, which takes the same code but the stream."""
    _, split = tiny_split(6, 2, 0)
    pre = Preprocessing(40, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic")
    classes = sorted(split["label"].unique())

    def batches(accelerator: Accelerator) -> list[torch.Tensor]:
        transform = build_transform(pre, normalise=not accelerator.normalises_pixels, chw=True)
        loader = accelerator.feed(make_loader(ImageTable(split, classes, transform), 5, False, 0), pre)
        return [images for images, _ in loader]

    assert resolve_accelerator("cpu").normalises_pixels is False  # on the CPU the workers normalise, as before
    on_device = Accelerator(torch.device("cpu"), None, False, normalises_pixels=True)
    raw = make_loader(ImageTable(split, classes, build_transform(pre, normalise=False, chw=True)), 5, False, 0)
    assert next(iter(raw))[0].dtype == torch.uint8  # what crosses from the workers: a quarter of the bytes
    fed, normalised = batches(on_device), batches(resolve_accelerator("cpu"))
    assert [b.shape for b in fed] == [b.shape for b in normalised] and fed[0].dtype == torch.float32
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fed, normalised, strict=True))
