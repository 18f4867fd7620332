"""A `headstart run` or `headstart sweep` stopped by a person leaves nothing behind: each runs as a real command
without PREFECT_API_URL (so it starts its temporary Prefect server), is signalled once its processes are up
(torchrun ranks training, a sweep trial in its Dask worker), with SIGTERM to its pid (`kill`) or SIGINT to its
process group (Ctrl-C), and afterwards no process it started is alive."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml
from typer.testing import CliRunner

from tests.support.leftovers import kill
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.server]  # each trains (briefly) under a temporary Prefect server

SERVER = "prefect.server.api.server:create_app"  # the temporary server's command line
SMALL = [
    "train.scenario=finetune", "train.epochs=3", "train.num_workers=0", "train.batch_size=8", "model.input_size=32",
    "health.label_issues=false", "health.drift=false",
]  # fmt: skip


class Tree:
    """A command and every process it starts, recorded while it runs (an orphan is no longer a descendant)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.root = psutil.Process(process.pid)
        self.seen: dict[int, psutil.Process] = {}

    def update(self) -> list[str]:
        """Record the current descendants; return every recorded one's command line."""
        try:
            for child in self.root.children(recursive=True):
                self.seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:  # the command has exited
            pass
        return [" ".join(self._cmdline(p)) for p in self.seen.values()]

    def alive(self) -> list[psutil.Process]:
        """Recorded descendants still running (a zombie has ended; psutil tells a reused pid from the original)."""
        return [p for p in self.seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    @staticmethod
    def _cmdline(process: psutil.Process) -> list[str]:
        try:
            return process.cmdline()
        except psutil.Error:
            return []


def ranks_training(tree: Tree, workspace: Path, run_dir: str) -> bool:
    """torchrun and two ranks are up, under the temporary server's run."""
    lines = tree.update()
    ranks = [line for line in lines if " step train " in line and "torch.distributed.run" not in line]
    return any(SERVER in line for line in lines) and len(ranks) >= 2


def trial_training(tree: Tree, workspace: Path, run_dir: str) -> bool:
    """A sweep trial has started in a Dask worker process."""
    lines = tree.update()
    started = any((workspace / run_dir).glob("trial-*/trial.json"))
    return started and any(SERVER in line for line in lines) and any("multiprocessing" in line for line in lines)


def sets(*overrides: str) -> list[str]:
    """``--set`` for each override."""
    return [arg for override in overrides for arg in ("--set", override)]


CASES: dict[str, tuple[list[str], Callable[[Tree, Path, str], bool]]] = {
    "run-torchrun": (["run", *sets(*SMALL, "train.distributed.nproc=2")], ranks_training),
    "sweep": (["sweep", "sweep.yaml", "--cluster", "local:1", *sets(*SMALL)], trial_training),
}


@pytest.fixture(scope="module")
def data_workspace(tmp_path_factory: pytest.TempPathFactory, fashion_idx_dir: Path) -> Path:
    """A workspace with a tiny Fashion-MNIST import and a one-trial sweep file, shared by the cases (each writes
    its own run folder)."""
    from headstart.cli.main import app
    from tasks.dvc_stages import init_pipeline_workspace
    from tests.support.params import suite_params_template

    base = tmp_path_factory.mktemp("stopped")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HEADSTART_DVC_REMOTE", str(base / "remote"))
        root = init_pipeline_workspace(base / "ws", suite_params_template(base / "template"))
        patch.chdir(root)
        args = ["data", "import", "fashion-mnist", "--per-class", "12", "--test-per-class", "2"]
        imported = CliRunner().invoke(app, args)
    assert imported.exit_code == 0, imported.output
    (root / "sweep.yaml").write_text(yaml.safe_dump({"trials": [{"train.lr": 0.001}]}))
    return root


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("command", sorted(CASES))
def test_a_stopped_command_leaves_no_process_behind(
    data_workspace: Path, tmp_path_factory: pytest.TempPathFactory, command: str, how: str
) -> None:
    args, started = CASES[command]
    run_dir = f"runs/{command}-{how}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "PREFECT_API_AUTH"))}
    env["PREFECT_HOME"] = str(tmp_path_factory.getbasetemp() / "stopped-prefect-home")  # its own server database
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"  # 20 s is short on 2 busy cores
    log = data_workspace / f"{command}-{how}.log"
    with log.open("wb") as out:  # its own session: a Ctrl-C to its group reaches nothing of the suite's
        process = subprocess.Popen(
            ["headstart", *args, "--run-dir", run_dir],
            cwd=data_workspace, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_as_a_terminals_job,
        )  # fmt: skip
    tree = Tree(process)
    try:
        wait_for(lambda: started(tree, data_workspace, run_dir) or process.poll() is not None, 300, 0.1, "training")
        assert process.poll() is None, f"{command} ended before it was stopped:\n{log.read_text()[-3000:]}"
        if how == "SIGTERM":
            process.send_signal(signal.SIGTERM)  # `kill PID`: the command alone
        else:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        wait_for(lambda: tree.update() is not None and process.poll() is not None, 180, 0.1, f"{command} to exit")
        assert process.returncode != 0, log.read_text()[-3000:]  # stopped, not finished

        # what it stopped has gone by the time it exits; an orphan stays (the grace covers the kernel's reaping)
        survivors = _gone_within(tree.alive, 10.0)
        assert not survivors, f"left behind by {command} after {how}:\n" + "\n".join(
            f"{p.pid}: {' '.join(Tree._cmdline(p))}" for p in survivors
        )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        kill(tree.alive())


def _as_a_terminals_job() -> None:
    """SIGINT as a terminal's foreground job has it: a suite started in the background (`make test &`) runs with
    SIGINT ignored, every child inherits that, and Python keeps an inherited ignore (Ctrl-C would do nothing)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _gone_within(alive: Callable[[], list[psutil.Process]], timeout: float) -> list[psutil.Process]:
    """Those of ``alive()`` still running after up to ``timeout`` seconds."""
    try:
        wait_for(lambda: not alive(), timeout, 0.2, "the stopped processes to end")
    except TimeoutError:
        return alive()
    return []
