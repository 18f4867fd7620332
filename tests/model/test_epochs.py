"""Training schedules: gradual unfreezing, layer-wise decay, warmup + cosine, EMA, mixup/cutmix, early stopping,
and resuming after the process is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from headstart.ground.params import load_params
from headstart.ground.run_folder import RunFolder
from headstart.library.evaluation.metrics import evaluate
from headstart.library.models.backbones import create_classifier, create_pretrained, freeze
from headstart.library.training.checkpoints import (
    BEST_WEIGHTS,
    EMA_WEIGHTS,
    STATE,
    WEIGHTS,
    checkpoint_epoch,
    latest_folder,
    load_checkpoint,
)
from headstart.library.training.epochs import _mix, build_optimizer, make_mixup
from headstart.library.training.scenarios import train
from tests.support.waiting import wait_for

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
# No augmentations: albumentations draws from its own generator, and these tests compare runs.
BASE = ["train.num_workers=0", "model.input_size=32", "train.batch_size=16", "train.scenario=finetune", "augment={}"]


@pytest.fixture(scope="module")
def data(tiny_split):
    return tiny_split(8, 2, 3)


@pytest.fixture(scope="module")
def pretrained() -> dict[str, torch.Tensor]:
    return create_pretrained("tf_efficientnet_lite0", "package:efficientnet-lite0").state_dict()


def run(data, name: str, *overrides: str):
    base, split = data
    return train(split, load_params(REPO_PARAMS, [*BASE, *overrides]), RunFolder(base / name), {})


def test_gradual_unfreezing_releases_stages_at_milestones(data, pretrained) -> None:
    result = run(data, "gradual", "train.freeze_stages=3", "train.unfreeze_milestones=[2]", "train.epochs=2")
    weights = load_file(result.model_dir / "model.safetensors")
    assert torch.equal(weights["conv_stem.weight"], pretrained["conv_stem.weight"])  # stage 0 stays frozen
    released = "blocks.1.0.conv_pw.weight"  # stage 2, released at epoch 2
    assert not torch.equal(weights[released], pretrained[released])
    assert json.loads((result.model_dir / "config.json").read_text())["freeze_stages"] == 2


def test_layer_decay_gives_discriminative_learning_rates() -> None:
    params = load_params(REPO_PARAMS, ["train.layer_decay=0.5", "train.warmup_epochs=0"])
    model = create_classifier("tf_efficientnet_lite0", "none", 3, params.model.head)
    freeze(model, 2, "trained")
    optimizer, _ = build_optimizer(model, params, updates_per_epoch=10)
    scales = sorted({g["lr_scale"] for g in optimizer.param_groups})
    assert len(scales) > 3 and scales[-1] == 1.0 and scales[0] < 0.01
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(model.conv_stem.weight) not in in_optimizer  # frozen: skipped, hence rebuilt at each milestone


def test_warmup_then_cosine() -> None:
    params = load_params(REPO_PARAMS, ["train.epochs=4", "train.warmup_epochs=1", "train.lr=0.01"])
    model = create_classifier("tf_efficientnet_lite0", "none", 3, params.model.head)
    optimizer, scheduler = build_optimizer(model, params, updates_per_epoch=10)
    lrs = []
    for update in range(0, 41, 5):
        scheduler.step_update(num_updates=update)
        lrs.append(optimizer.param_groups[0]["lr"])
    peak = lrs.index(max(lrs))
    assert lrs[0] == pytest.approx(0.001) and max(lrs) > 0.008 and lrs[-1] < 0.001  # warm up from lr/10, decay
    assert lrs[: peak + 1] == sorted(lrs[: peak + 1]) and lrs[peak:] == sorted(lrs[peak:], reverse=True)


def test_ema_weights_are_what_ships(data) -> None:
    result = run(data, "ema", "train.ema_decay=0.5", "train.epochs=2")
    shipped = load_file(result.model_dir / "model.safetensors")
    published = latest_folder(data[0] / "ema" / "checkpoints")
    ema, raw = load_file(published / EMA_WEIGHTS), load_file(published / WEIGHTS)
    assert torch.equal(shipped["classifier.weight"], ema["classifier.weight"])
    assert not torch.equal(shipped["classifier.weight"], raw["classifier.weight"])


def test_mixup_and_cutmix_make_soft_targets(data) -> None:
    params = load_params(REPO_PARAMS, ["train.mixup_alpha=0.4", "train.cutmix_alpha=1.0", "train.label_smoothing=0.1"])
    mixup = make_mixup(params, num_classes=10)
    images, targets = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    mixed, soft = _mix(mixup, images.clone(), targets)
    assert soft.shape == (4, 10) and torch.allclose(soft.sum(1), torch.ones(4))
    assert (soft > 0.2).sum(1).max() >= 1 and not torch.equal(mixed, images)
    _, odd = _mix(mixup, torch.randn(3, 3, 8, 8), torch.tensor([0, 1, 2]))
    assert odd[0, 0] == pytest.approx(0.9 + 0.01)  # odd batch: smoothed one-hot only
    assert make_mixup(load_params(REPO_PARAMS), 10) is None
    # the epoch loop really mixes: the same seed and data without mixing trains to other weights and loss
    mixed_run = run(data, "mixup", "train.mixup_alpha=0.4", "train.cutmix_alpha=1.0", "train.epochs=1")
    plain_run = run(data, "plain", "train.epochs=1")
    assert mixed_run.history[0]["train_loss"] != plain_run.history[0]["train_loss"]
    mixed_head = load_file(mixed_run.model_dir / "model.safetensors")["classifier.weight"]
    assert not torch.equal(mixed_head, load_file(plain_run.model_dir / "model.safetensors")["classifier.weight"])
    again = run(data, "plain-again", "train.epochs=1")  # and that difference is not run-to-run noise
    assert again.history[0]["train_loss"] == plain_run.history[0]["train_loss"]


def test_early_stopping_stops_and_restores_the_best_epoch(data) -> None:
    result = run(
        data, "early", "train.lr=1e-9", "train.epochs=6", "train.early_stopping_patience=2", "train.warmup_epochs=0"
    )
    accuracies = [row["val_accuracy"] for row in result.history]
    best_epoch = accuracies.index(max(accuracies)) + 1
    assert len(result.history) == best_epoch + 2 < 6  # stopped two epochs without a gain after the best
    # what ships is the best epoch's state, not the last epoch's (which the last checkpoint holds): BatchNorm
    # statistics kept moving after epoch 1 even at this learning rate
    shipped = load_file(result.model_dir / "model.safetensors")
    last = load_file(latest_folder(RunFolder(data[0] / "early").checkpoints) / WEIGHTS)
    assert any(not torch.equal(shipped[k], last[k]) for k in shipped)
    _, split = data
    val_as_test = split[split["split"] == "val"].assign(split="test")
    best = max(row["val_accuracy"] for row in result.history)
    assert evaluate(result.model_dir, val_as_test).metrics["accuracy"] == pytest.approx(best)


def test_resume_after_the_process_is_killed(data, tmp_path: Path) -> None:
    base, _ = data
    out = tmp_path / "run"
    out.mkdir()
    (out / "split.csv").write_text((base / "split.csv").read_text())
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"].update(epochs=12, num_workers=0, batch_size=16, scenario="finetune")
    params["model"]["input_size"] = 32
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    command = ["headstart", "step", "train", "--params", str(tmp_path / "params.yaml"), "--out", str(out)]
    checkpoints = out / "checkpoints"
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: published_epoch(checkpoints) >= 2, 120, 0.05, "the epoch-2 checkpoint")
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = checkpoint_epoch(checkpoints)
    assert 2 <= killed_at < 12 and not (out / "model").exists()

    second = subprocess.run(command, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"resuming after epoch {killed_at}" in second.stdout + second.stderr
    curves = (out / "curves.csv").read_text().splitlines()
    assert len(curves) == 13 and curves[1].startswith("1,")  # all 12 epochs, the first run's included


def published_epoch(checkpoints: Path) -> int:
    """The published checkpoint's epoch, 0 while none (or while the folder it names is being replaced)."""
    try:
        return checkpoint_epoch(checkpoints)
    except (OSError, RuntimeError, EOFError):
        return 0


def test_a_kill_during_a_checkpoint_write_resumes_from_the_previous_epoch_exactly(data, tmp_path: Path) -> None:
    """The process is stopped (SIGSTOP) the moment an epoch's checkpoint folder appears, before LATEST names it,
    and then SIGKILLed: the write is torn. The retry must resume from the previous epoch's tensors exactly, with
    the EMA and the best epoch's weights, and the history must hold every epoch once."""
    base, _ = data
    out = tmp_path / "run"
    out.mkdir()
    (out / "split.csv").write_text((base / "split.csv").read_text())
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"].update(
        epochs=6, num_workers=0, batch_size=16, scenario="finetune", ema_decay=0.9, early_stopping_patience=6
    )
    params["model"]["input_size"] = 32
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    command = ["headstart", "step", "train", "--params", str(tmp_path / "params.yaml"), "--out", str(out)]
    checkpoints = out / "checkpoints"
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def torn_write() -> Path | None:
        published = latest_folder(checkpoints)
        if published is None or published.name < "epoch-0002":
            return None
        writing = [p for p in checkpoints.glob("epoch-*") if p.name > published.name]
        return writing[0] if writing else None

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and first.poll() is None:
        if torn_write() is not None:
            os.killpg(first.pid, signal.SIGSTOP)  # frozen mid-write; LATEST is checked again below
            if torn_write() is not None:
                break
            os.killpg(first.pid, signal.SIGCONT)  # it had published meanwhile: try the next epoch
        time.sleep(0.0005)
    writing = torn_write()
    assert writing is not None, "never caught a checkpoint write in the act"
    published = latest_folder(checkpoints)
    expected = {name: load_file(published / name) for name in (WEIGHTS, EMA_WEIGHTS, BEST_WEIGHTS)}
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    key = torch.load(published / STATE, weights_only=True)["resume_key"]
    resumed = load_checkpoint(checkpoints, key)
    assert resumed is not None and resumed.folder == published  # the torn folder is never what a retry reads
    for name, tensors in expected.items():
        loaded = resumed.tensors(name)
        assert loaded is not None and loaded.keys() == tensors.keys(), name
        assert all(torch.equal(loaded[k], tensors[k]) for k in tensors), name

    epoch = resumed.state["epoch"]
    second = subprocess.run(command, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"resuming after epoch {epoch} from {published}" in second.stdout + second.stderr
    assert not writing.exists() or latest_folder(checkpoints) == writing  # debris replaced, never read
    curves = (out / "curves.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[0]) for line in curves] == [1, 2, 3, 4, 5, 6]  # every epoch once


def test_auto_scenario_picks_by_the_smallest_class_and_the_device(caplog: pytest.LogCaptureFixture) -> None:
    """By data size on every device; the fine-tune at model.input_size on the CPU and at the backbone's pretrained
    resolution on CUDA (the branch a GPU takes: its choice, resolution and log line are what can be checked here;
    its accuracy and speed wait for a GPU)."""
    import logging

    import pandas as pd

    from headstart.library.training.scenarios import resolve_scenario

    def split(per_class: dict[str, int]) -> pd.DataFrame:
        rows = [(c, "train") for c, n in per_class.items() for _ in range(n)] + [("a", "test")] * 50
        return pd.DataFrame(rows, columns=["label", "split"])

    params = load_params(REPO_PARAMS, ["train.scenario=auto", "train.auto_features_below=30"])
    for device in ("cpu", "cuda"):
        small, choice = resolve_scenario(split({"a": 100, "b": 12}), params, device)
        assert small.train.scenario == "features" and small.model.input_size == params.model.input_size
        assert choice["scenario"] == "features" and "12 training images" in choice["reason"]
    on_cpu, choice = resolve_scenario(split({"a": 100, "b": 30}), params, "cpu")
    assert on_cpu.train.scenario == "finetune" and on_cpu.model.input_size == params.model.input_size == 64
    assert choice == {"scenario": "finetune", "device": "cpu", "input_size": 64, "reason": choice["reason"]}
    with caplog.at_level(logging.INFO, logger="headstart.library.training.scenarios"):
        on_cuda, choice = resolve_scenario(split({"a": 100, "b": 30}), params, "cuda")
    assert on_cuda.train.scenario == "finetune" and on_cuda.model.input_size is None  # the pretrained resolution
    assert choice["device"] == "cuda" and "pretrained resolution" in choice["reason"]
    assert f"scenario auto on cuda: finetune ({choice['reason']})" in caplog.text
    assert on_cuda.train.model_copy(update={"scenario": "auto"}) == params.train  # nothing else changed
    hybrid = load_params(
        REPO_PARAMS, ["train.scenario=auto", "train.auto_large=hybrid", "train.auto_features_below=30"]
    )
    assert resolve_scenario(split({"a": 40, "b": 40}), hybrid, "cpu")[0].train.scenario == "hybrid"
    explicit = load_params(REPO_PARAMS, ["train.scenario=finetune"])
    assert resolve_scenario(split({"a": 3, "b": 3}), explicit, "cuda") == (explicit, None)


def test_a_checkpoint_of_other_training_data_is_not_resumed(data, tmp_path: Path) -> None:
    _, split = data
    run_folder = RunFolder(tmp_path / "reused")
    params = load_params(REPO_PARAMS, [*BASE, "train.epochs=1"])
    first = train(split, params, run_folder, {})
    first_weights = load_file(first.model_dir / "model.safetensors")
    fewer = split.drop(split[split["split"] == "train"].index[:8])  # a new data version, same run folder
    second = train(fewer, params, run_folder, {})
    second_weights = load_file(second.model_dir / "model.safetensors")
    # resuming would have found the epoch done and shipped the first run's weights unchanged
    assert not torch.equal(first_weights["classifier.weight"], second_weights["classifier.weight"])
    same_again = train(fewer, params, run_folder, {})  # the same data: the finished checkpoint is resumed
    assert torch.equal(load_file(same_again.model_dir / "model.safetensors")["classifier.weight"],
                       second_weights["classifier.weight"])  # fmt: skip


def test_the_ema_is_not_restarted_when_a_stage_is_released(tmp_path: Path) -> None:
    """Epoch 1 with a frozen stage, then (resumed) epoch 2 releases it. With a decay of almost 1 the EMA (what
    ships) stays where it was after epoch 1; restarted at the milestone it would jump to the raw weights."""
    from timm.utils import freeze as freeze_modules
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from headstart.library.training.epochs import UnfreezeSchedule, fit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    freeze_modules(model, ["0"])
    loader = DataLoader(TensorDataset(torch.randn(32, 3, 8, 8), torch.randint(0, 2, (32,))), batch_size=8)
    common = ["train.ema_decay=0.999999", "train.freeze_stages=1", "train.lr=0.5", "train.warmup_epochs=0"]
    common += ["train.device=cpu", "train.precision=fp32"]

    def fit_epochs(*overrides: str) -> None:  # one resume key: the second call resumes the first's checkpoint
        params = load_params(REPO_PARAMS, [*common, *overrides])
        fit(model, loader, None, params, tmp_path, UnfreezeSchedule([["0"]], "trained"), 2, resume_key="same-run")

    fit_epochs("train.epochs=1")
    after_one = latest_folder(tmp_path)
    ema_1, raw_1 = load_file(after_one / EMA_WEIGHTS), load_file(after_one / WEIGHTS)
    assert not torch.allclose(ema_1["4.weight"], raw_1["4.weight"], atol=1e-2)  # the two are told apart
    fit_epochs("train.epochs=2", "train.unfreeze_milestones=[2]")
    shipped = model.state_dict()
    for name, tensor in ema_1.items():
        assert torch.allclose(shipped[name], tensor, atol=1e-3), name


def test_a_second_writer_of_the_same_checkpoints_is_refused_and_nothing_is_touched(data, tmp_path: Path) -> None:
    """A retry started while a killed run's training process (or a torchrun rank) still writes the checkpoints
    must not train into them: the live writer's lock (lockf, held by another process here) refuses it."""
    import fcntl

    from headstart.ground.errors import RunFailed

    checkpoints = RunFolder(tmp_path / "busy").checkpoints
    first = run(data, "busy-first", "train.epochs=1")  # a published checkpoint to guard
    checkpoints.parent.mkdir(parents=True)
    (data[0] / "busy-first" / "checkpoints").rename(checkpoints)
    before = {p.name: p.stat().st_mtime_ns for p in checkpoints.rglob("*")}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(checkpoints / ".lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        _, split = data
        with pytest.raises(RunFailed, match=r"busy/checkpoints: another process is training into these checkpoints"):
            train(split, load_params(REPO_PARAMS, [*BASE, "train.epochs=2"]), RunFolder(tmp_path / "busy"), {})
        assert {p.name: p.stat().st_mtime_ns for p in checkpoints.rglob("*")} == before  # nothing written or removed
        assert not (tmp_path / "busy" / "model").exists() and first.model_dir.exists()
    finally:
        holder.kill()
        holder.wait()
    with open(checkpoints / ".lock", "a") as handle:  # the lock died with its process: nothing stale is left
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


HOLD_LOCK = """
import fcntl, sys
handle = open(sys.argv[1], "a")
fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
sys.stdin.read()  # held until the test closes this pipe (or kills the holder)
"""
