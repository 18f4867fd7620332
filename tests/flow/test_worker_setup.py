"""What a cluster that shares no file system lacks is named before anything runs: the coordinator's checks, the
worker commands' refusals and the gpu deployment's pull step without a workspace it can see."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.workers import dask_worker_command, workspace_for_run
from headstart.ground.errors import ConfigError
from headstart.ground.params import Params
from tasks.remote_trial import plan_exchange


def test_a_remote_sweep_needs_an_s3_registry_and_weights_every_machine_can_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"registry.uri 'file://registry': a tcp:// cluster shares no file system"):
        plan_exchange(Params(), [], tmp_path, tmp_path / "sweep")
    on_s3 = Params(registry={"uri": "s3://models/registry"})
    local_weights = Params(registry={"uri": "s3://models/registry"}, model={"weights": "file:weights.safetensors"})
    with pytest.raises(ConfigError, match=r"model.weights file:weights.safetensors: a file of this machine"):
        plan_exchange(on_s3, [on_s3, local_weights], tmp_path, tmp_path / "sweep")  # a trial's own override too


def test_a_dask_worker_for_a_scheduler_elsewhere_must_be_told_its_own_address() -> None:
    with pytest.raises(ConfigError, match=r"--host ADDRESS"):
        dask_worker_command("tcp://10.0.0.5:8786")
    command = dask_worker_command("tcp://10.0.0.5:8786", host="10.0.0.7")
    assert command[command.index("--host") + 1] == "10.0.0.7"
    assert dask_worker_command("tcp://127.0.0.1:8786")[-2:] == ["--local-directory", "headstart-worker/dask"]


def test_the_gpu_pull_step_without_a_git_remote_or_a_visible_workspace_names_the_variable(tmp_path: Path) -> None:
    """A remote worker without HEADSTART_GIT_REMOTE gets the deploying machine's path: named, not a bare
    FileNotFoundError."""
    with pytest.raises(ConfigError, match=r"needs HEADSTART_GIT_REMOTE"):
        workspace_for_run(workspace=str(tmp_path / "elsewhere"), git_remote="")


def test_a_rebuild_keeps_autos_recorded_choice_instead_of_choosing_on_its_own_device(tmp_path: Path) -> None:
    """A model auto trained on CUDA at the pretrained resolution is rebuilt at that resolution on a CPU machine
    (where auto would fine-tune at 64 px): the recipe is the record's, only the device differs."""
    from flows.reproduce import Record, rebuild_params

    given = Params().as_dict()
    assert given["train"]["scenario"] == "auto" and given["model"]["input_size"] == 64
    choice = {"scenario": "finetune", "device": "cuda", "input_size": None, "reason": "..."}
    record = Record("v1", {"params": given, "environment": {"threads": 2}, "scenario_choice": choice}, {}, {})
    rebuilt = rebuild_params(record, None, tmp_path)
    assert rebuilt["train"]["scenario"] == "finetune" and rebuilt["model"]["input_size"] is None
    without = Record("v0", {"params": given, "environment": {"threads": 2}}, {}, {})  # recorded before the choice
    assert rebuild_params(without, None, tmp_path)["train"]["scenario"] == "auto"


def test_a_workers_half_made_checkout_is_made_again_and_a_whole_one_reused(workspace: Path, fashion_idx_dir) -> None:
    """A worker killed while checking the data out leaves a folder without its marker: the next trial on that
    machine checks it out again from the DVC remote (the killed one's files gone); a finished checkout is reused."""
    import os

    from typer.testing import CliRunner

    from headstart.cli.main import app
    from headstart.library.data.versioning import read_dvc_md5
    from tasks.remote_trial import WORKER_FOLDER, Exchange, _checkout

    imported = CliRunner().invoke(app, ["data", "import", "fashion-mnist", "--per-class", "2", "--test-per-class", "1"])
    assert imported.exit_code == 0, imported.output
    md5 = read_dvc_md5(workspace / "data/fashion-mnist.dvc")
    remote = os.environ["HEADSTART_DVC_REMOTE"]  # the workspace fixture's local DVC remote, which the import pushed
    exchange = Exchange("s3://unused/registry", "m", "r", remote, {"data/fashion-mnist": md5}, {})
    home = workspace.parent / "machine" / WORKER_FOLDER
    expected = sorted(p.relative_to(workspace).as_posix() for p in (workspace / "data/fashion-mnist").rglob("*.png"))

    def images(folder: Path) -> list[str]:
        return sorted(p.relative_to(folder).as_posix() for p in (folder / "data/fashion-mnist").rglob("*.png"))

    folder = _checkout(home, exchange)
    assert images(folder) == expected
    # killed halfway: no marker, an image missing, a stray file from the dead attempt
    (folder / ".checked-out").unlink()
    (folder / expected[0]).unlink()
    (folder / "data/fashion-mnist/stray.png").write_bytes(b"half")
    assert _checkout(home, exchange) == folder
    assert images(folder) == expected and (folder / ".checked-out").is_file()
    # whole: reused as it is (a file planted now survives the next trial's call)
    (folder / "planted").write_text("kept")
    assert _checkout(home, exchange) == folder and (folder / "planted").read_text() == "kept"
