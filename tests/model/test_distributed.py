"""Training across processes: the train step under torchrun (2 ranks, gloo on the CPU) trains to the same
accuracy band as one process, rank 0 alone writes, a SIGKILLed rank fails the step, and a retry resumes to exactly
the weights an uninterrupted 2-rank training gives."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from headstart.library.evaluation.metrics import evaluate
from headstart.library.training.checkpoints import checkpoint_epoch
from tests.support.leftovers import kill
from tests.support.waiting import wait_for

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
EPOCHS = 4
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tiny_split):
    return tiny_split(30, 20, 5)


def step_train(data, tmp_path: Path, name: str, nproc: int, epochs: int) -> tuple[list[str], Path]:
    """The `headstart step train` command of a fresh run folder holding the split, with ``nproc`` processes."""
    base, _ = data
    out = tmp_path / name
    out.mkdir()
    (out / "split.csv").write_text((base / "split.csv").read_text())
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"].update(
        epochs=epochs, num_workers=1, batch_size=16, scenario="finetune", distributed={"nproc": nproc}
    )
    params["model"]["input_size"] = 32  # the shipped augmentations on: their draws must repeat after a resume
    (out.parent / f"{name}.yaml").write_text(yaml.safe_dump(params))
    return ["headstart", "step", "train", "--params", str(out.parent / f"{name}.yaml"), "--out", str(out)], out


def test_two_processes_train_like_one_across_a_killed_rank_and_a_retry(data, tmp_path: Path) -> None:
    _, split = data
    test_rows = split[split["split"] == "test"]
    command, single = step_train(data, tmp_path, "nproc1", 1, EPOCHS)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "world size 1" in done.stdout + done.stderr

    command, whole = step_train(data, tmp_path, "uninterrupted", 2, EPOCHS)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr

    command, out = step_train(data, tmp_path, "nproc2", 2, EPOCHS)
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: published_epoch(out / "checkpoints") >= 1, 180, 0.1, "the epoch-1 checkpoint")
    rank1 = wait_for(lambda: rank_process(first.pid, 1), 10, 0.1, "rank 1's process")
    rank1.send_signal(signal.SIGKILL)
    output, _ = first.communicate(timeout=120)
    killed_at = checkpoint_epoch(out / "checkpoints")
    assert first.returncode != 0, output
    assert "world size 2 (gloo)" in output
    assert "training under torchrun failed" in output  # one clear message naming what failed
    assert 1 <= killed_at < EPOCHS and not (out / "model").exists()  # nothing half-trained ships

    second = subprocess.run(command, capture_output=True, text=True, timeout=600)  # a hung collective fails here
    log = second.stdout + second.stderr
    assert second.returncode == 0, log
    assert f"resuming after epoch {killed_at}" in log  # every rank resumed the same checkpoint
    assert "ranks in step: identical weights on all 2 ranks" in log  # gradients averaged: no rank trained alone
    assert sum(f"epoch {EPOCHS}/{EPOCHS} " in line for line in log.splitlines()) == 1  # rank 0 alone reports
    # the same inputs, the same model: a kill and a resume included (order, augmentations and torch's RNG follow
    # the seed and the epoch, not the process's history)
    digest = {n: hashlib.sha256((f / "model" / "model.safetensors").read_bytes()).hexdigest() for n, f in
              (("uninterrupted", whole), ("killed and resumed", out))}  # fmt: skip
    assert digest["uninterrupted"] == digest["killed and resumed"], digest
    assert (whole / "curves.csv").read_text() == (out / "curves.csv").read_text()
    curves = (out / "curves.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[0]) for line in curves] == list(range(1, EPOCHS + 1))  # every epoch once
    # the same data and seed land in the same band as one process, a killed rank and a resume included. Measured:
    # two ranks score 6-10 points lower at this size, BatchNorm seeing 8 images per rank instead of 16 (torch's
    # SyncBatchNorm runs on GPUs only); that the ranks trained as one is the bitwise check above
    accuracy = {n: evaluate(folder / "model", test_rows).metrics["accuracy"] for n, folder in ((1, single), (2, out))}
    assert accuracy[1] > 0.5 and abs(accuracy[2] - accuracy[1]) <= 0.15, accuracy
    print("test accuracy by process count:", accuracy)


def published_epoch(checkpoints: Path) -> int:
    try:
        return checkpoint_epoch(checkpoints)
    except (OSError, RuntimeError, EOFError):
        return 0


def rank_process(root: int, rank: int) -> psutil.Process | None:
    """The descendant of ``root`` that torchrun started as ``rank``."""
    for child in psutil.Process(root).children(recursive=True):
        try:
            env = child.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        if env.get("RANK") == str(rank) and "TORCHELASTIC_RUN_ID" in env:
            return child
    return None


DEAF_RANK = """
import os, pathlib, signal, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as a rank that missed torchrun's SIGTERM (lost before its exec)
pathlib.Path(sys.argv[1], os.environ["RANK"]).write_text(str(os.getpid()))
while True:  # until SIGKILLed: SIGTERM is ignored, so pause() never returns for it
    signal.pause()
"""
INTERRUPTED_LAUNCH = """
import os, sys
from pathlib import Path
from headstart.cli.interrupts import sigterm_as_ctrl_c
from headstart.library.training import distributed

sigterm_as_ctrl_c()  # as `headstart run` does
torchrun = distributed.launch_command(2, [])[:-3]  # torchrun's own flags, our rank script instead of the step
distributed.run_ranks([*torchrun, sys.argv[1], sys.argv[2]], Path.cwd(), dict(os.environ))
"""


def test_an_interrupted_launch_leaves_no_rank_behind_even_one_deaf_to_sigterm(tmp_path: Path) -> None:
    """torchrun SIGKILLs a rank its SIGTERM did not stop: the launcher waits for that instead of killing torchrun
    first (each rank is in a session of its own: only torchrun can reach it)."""
    (tmp_path / "rank.py").write_text(DEAF_RANK)
    pids = tmp_path / "pids"
    pids.mkdir()
    launcher = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_LAUNCH, str(tmp_path / "rank.py"), str(pids)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    ranks: list[psutil.Process] = []
    try:
        wait_for(lambda: len(list(pids.iterdir())) == 2, 120, 0.1, "both ranks up")
        ranks += [psutil.Process(int(f.read_text())) for f in pids.iterdir()]
        launcher.send_signal(signal.SIGTERM)
        output, _ = launcher.communicate(timeout=120)
        assert launcher.returncode != 0, output  # interrupted, not finished
        alive = [p for p in ranks if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"ranks left behind: {alive}\n{output[-2000:]}"
    finally:
        kill(ranks)
        if launcher.poll() is None:
            launcher.kill()
