"""Training across processes with torch's own tools: ``torchrun`` (``torch.distributed.run``) starts the ranks,
``torch.distributed`` (gloo on the CPU, nccl on CUDA) connects them, DDP averages the gradients.

The train step launches ``python -m torch.distributed.run --standalone --nproc-per-node N -m headstart
step train --out RUN``; each rank runs the ordinary train step and finds itself in a process group
(:func:`current`). Rank 0 alone evaluates, writes checkpoints and saves the model; every rank resumes from the
same checkpoint. On many machines the same command runs with ``--nnodes`` and a rendezvous endpoint instead of
``--standalone``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from headstart.ground.errors import ConfigError, RunFailed
from headstart.library.training.world import World

log = logging.getLogger(__name__)


def start(world: World, device_type: str, timeout_minutes: float = 30.0) -> str | None:
    """Join the process group (once); returns the backend, or None for a single process. nccl on CUDA (each rank
    on its own GPU, ``cuda:LOCAL_RANK``), gloo on the CPU. ``timeout_minutes`` bounds how long a rank waits at a
    collective while rank 0 works alone (extracting features, scoring validation): the run's own time limit."""
    if not world.distributed:
        return None
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_minutes))
    return backend


def stop() -> None:
    """Leave the process group (after the last collective)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (a no-op for one process)."""
    if dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def main_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. filling the feature cache), the others after it, reading what it wrote."""
    if not world.is_main:
        barrier()
    yield
    if world.is_main:
        barrier()


def from_main(value: float) -> float:
    """Rank 0's value on every rank (a score only rank 0 computed, so all ranks stop at the same epoch)."""
    if not dist.is_initialized():
        return value
    box = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.broadcast(box, src=0)
    return float(box.item())


def _collective_device() -> str:
    return "cuda" if dist.get_backend() == "nccl" else "cpu"  # nccl moves GPU tensors only


def summed(*values: float) -> tuple[float, ...]:
    """Each value summed over all ranks (as given, for one process)."""
    if not dist.is_initialized():
        return values
    totals = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(totals)
    return tuple(totals.tolist())


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics, which every rank updates on its own batches) to all
    ranks, so the model rank 0 evaluates and saves is the model every rank holds."""
    if not dist.is_initialized():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def check_in_step(model: nn.Module) -> int:
    """Raise when the ranks' weights differ: DDP's averaged gradients keep every rank's parameters bitwise equal,
    so any difference means a rank trained on its own. Returns the number of ranks compared."""
    if not dist.is_initialized():
        return 1
    fingerprint = hashlib.sha256()
    for tensor in [*model.parameters(), *model.buffers()]:
        fingerprint.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    mine = torch.tensor(list(fingerprint.digest()), dtype=torch.uint8, device=_collective_device())
    seen = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(seen, mine)
    digests = [bytes(t.cpu().tolist()).hex() for t in seen]
    if len(set(digests)) != 1:
        raise RuntimeError(f"the training ranks' weights diverged: {digests}")
    return len(digests)


def wrap(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """The model in DDP (gradients averaged across ranks in backward), or as it is for one process."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def per_rank_batch(batch_size: int, world: World) -> int:
    """``train.batch_size`` is the global batch: each rank takes its share, so N processes take the same steps
    with the same effective batch as one."""
    if batch_size % world.size:
        raise ConfigError(f"train.batch_size ({batch_size}) must divide evenly among {world.size} processes")
    return batch_size // world.size


def launch_environment(nproc: int, device_type: str) -> dict[str, str]:
    """The ranks' environment: on the CPU the cores shared among them (torchrun would give each one thread), on
    CUDA a GPU each (a ConfigError naming both counts when there are fewer)."""
    env = dict(os.environ)
    if device_type == "cuda" and nproc > torch.cuda.device_count():
        raise ConfigError(
            f"train.distributed.nproc={nproc} needs a GPU per process; torch sees {torch.cuda.device_count()}"
        )
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env


# torchrun's grace for ranks after its SIGTERM before it SIGKILLs them. A rank can miss that SIGTERM (one that
# lands between fork and exec is lost), then waits on the rendezvous store for many minutes; only torchrun
# knows its ranks (each in a session of its own), so torchrun must get to its SIGKILL before anyone kills it.
RANK_SHUTDOWN_SECONDS = 10


def launch_command(nproc: int, step_args: Sequence[str]) -> list[str]:
    """``torchrun --standalone --nproc-per-node N -m headstart step ...`` with this interpreter.
    ``--max-restarts 0``: a failed rank fails the step (the run's retry resumes from the checkpoint)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "--max-restarts=0", f"--shutdown-timeout={RANK_SHUTDOWN_SECONDS}", "-m", "headstart", "step", *step_args,
    ]  # fmt: skip


def run_ranks(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Run the torchrun command, passing every line it prints to this process's log (so epochs show in the
    Prefect UI); raises RunFailed naming the exit status and the last lines when any rank failed. If this
    process is interrupted (a step timeout, Ctrl-C) the ranks are stopped too."""
    log.info("launching %s", " ".join(command[2:]))
    tail: list[str] = []
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                log.info("rank output: %s", line)
                tail = [*tail[-11:], line]
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.terminate()  # torchrun forwards it to the ranks, then SIGKILLs those still up
                try:  # its SIGTERM grace, its SIGKILL wait (the same length), and a margin for 2 busy cores
                    proc.wait(timeout=2 * RANK_SHUTDOWN_SECONDS + 20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    if code != 0:
        last = "\n".join(tail)
        raise RunFailed(f"training under torchrun failed (exit status {code}); its last lines:\n{last}")
