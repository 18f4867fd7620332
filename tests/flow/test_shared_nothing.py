"""A sweep on a Dask cluster that shares no file system with the workspace, as separate machines on this one: a
`dask scheduler` and two `headstart worker dask` processes started here, each in its own empty folder and HOME
and its own mount namespace, where the test session's folders (the workspace, its local DVC remote, the servers'
data) are hidden under an empty tmpfs: they reach the data only through the SeaweedFS DVC remote and hand trials
back through the registry's bucket.

Not another uid: this machine's Python lives under /root (0700), which another user cannot execute."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from flows.workers import WORKER_ENVIRONMENT
from headstart.cli.main import app
from headstart.library.data.split import load_split
from headstart.library.evaluation.metrics import evaluate
from headstart.library.registry.registry import Registry
from headstart.library.storage.backends import S3Storage
from tasks.remote_trial import WORKER_FOLDER
from tests.support.seaweedfs import free_ports
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TRIALS = [
    {"train.classifier": "logreg", "train.classifier_c": 0.01},
    {"train.classifier": "logreg", "train.classifier_c": 1.0},
]


@pytest.fixture
def machines():
    """Two empty folders, each a worker machine's working directory and HOME (outside the session's folders)."""
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("hides the workspace from its workers in a mount namespace, which takes root (CI runs as root)")
    folders = [Path(tempfile.mkdtemp(prefix="headstart-machine-")) for _ in range(2)]
    yield folders
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        folder.with_name(f"{folder.name}.log").unlink(missing_ok=True)  # its worker's log, beside it


@pytest.fixture
def data_on_s3(workspace: Path, bucket: str, fashion_idx_dir, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workspace's DVC remote in the bucket and Fashion-MNIST imported (pushed there); returns the folder that
    holds every folder of this test session (xdist's workers' too), which the workers must not see."""
    runner = CliRunner()
    for args in (["data", "remote", f"s3://{bucket}/dvc"],
                 ["data", "import", "fashion-mnist", "--per-class", "12", "--test-per-class", "4"]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    base = tmp_path_factory.getbasetemp()
    return base.parent if "popen-gw" in str(workspace) else base


def stop(processes) -> None:
    """SIGTERM each process group, then SIGKILL what has not ended within 30 s."""
    processes = list(processes)
    for process in processes:
        os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def without(hidden: Path, command: list[str]) -> list[str]:
    """``command`` in a mount namespace of its own where ``hidden`` is an empty, unreadable tmpfs."""
    mount = 'mount -t tmpfs -o size=1m,mode=000 hidden "$0" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, str(hidden), *command]


def started_trials(machines: list[Path]) -> list[tuple[str, int]]:
    """(trial, pid of the worker process running it) for each trial a worker has begun."""
    begun = []
    for record in (p for m in machines for p in (m / WORKER_FOLDER / "runs").glob("*/trial-*/trial.json")):
        try:
            begun.append((record.parent.name, json.loads(record.read_text())["attempts"][-1]["pid"]))
        except (ValueError, KeyError, IndexError):
            continue  # being written
    return begun


def worker_environment(machine: Path, api_url: str, seaweedfs) -> dict[str, str]:
    """What the README says a worker needs, and nothing of this process's own (no HEADSTART_* folders)."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(machine), "LANG": "C.UTF-8"}
    env |= {"PREFECT_API_URL": api_url, **seaweedfs.env()}
    env["HEADSTART_FEATURE_ENGINE"] = "torch"  # as the whole suite: no ONNX export per tiny extractor
    assert set(env) - {"PATH", "HOME", "LANG", "AWS_DEFAULT_REGION", "HEADSTART_FEATURE_ENGINE"} <= set(
        WORKER_ENVIRONMENT
    )
    return env


def test_a_sweep_on_workers_that_share_nothing_with_the_workspace(
    workspace: Path, data_on_s3: Path, prefect_server: str, seaweedfs, bucket: str, machines: list[Path]
) -> None:
    (workspace / "sweep.yaml").write_text(yaml.safe_dump({"trials": TRIALS}))
    # every folder of this test session (the workspace, its local DVC remote, the servers' data) is hidden from
    # the workers: what they have is their own folder, the package, and the servers' addresses
    session = data_on_s3
    assert workspace.is_relative_to(session) and not any(m.is_relative_to(session) for m in machines)
    seen = subprocess.run(without(session, ["ls", str(workspace)]), capture_output=True, text=True)
    assert seen.returncode != 0 and "No such file or directory" in seen.stderr

    [port] = free_ports(1)
    scheduler_address = f"tcp://127.0.0.1:{port}"
    started = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--dashboard-address", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )]  # fmt: skip
    try:
        for machine in machines:
            log = open(machine.parent / f"{machine.name}.log", "w")  # noqa: SIM115 - the worker's, closed with it
            started.append(subprocess.Popen(
                without(session, [str(Path(sys.executable).parent / "headstart"), "worker", "dask", scheduler_address]),
                cwd=machine, env=worker_environment(machine, prefect_server, seaweedfs),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))  # fmt: skip
        from distributed import Client

        with Client(scheduler_address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        registry_uri = f"s3://{bucket}/registry"
        sweep = subprocess.Popen(
            ["headstart", "sweep", "sweep.yaml", "--cluster", scheduler_address, "--run-dir", "runs/sweep",
             "--set", f"registry.uri={registry_uri}", "--set", "train.scenario=features",
             "--set", "health.label_issues=false", "--set", "health.drift=false", "--summary-json", "summary.json"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        # the worst moment for a machine to die: its trial has started, on data only that machine checked out
        first = wait_for(lambda: started_trials(machines), 300, 0.05, "a trial to start on a worker")
        killed_trial, killed_pid = first[0]
        os.kill(killed_pid, signal.SIGKILL)  # the Dask worker process running it (its nanny starts another)
        output, _ = sweep.communicate(timeout=900)
        logs = "".join((m.parent / f"{m.name}.log").read_text()[-3000:] for m in machines)
        assert sweep.returncode == 0, output[-6000:] + logs
    finally:
        stop(reversed(started))

    record = json.loads((workspace / "runs/sweep/sweep.json").read_text())
    rows = {row["trial"]: row for row in record["trials"]}
    assert sorted(rows) == ["trial-00", "trial-01"] and all("error" not in r for r in rows.values())
    # every trial ran on a worker, in that machine's own folder, on data it checked out from the DVC remote
    ran_on: dict[str, set[Path]] = {}
    for machine in machines:
        for trial in (machine / WORKER_FOLDER / "runs").glob("*/trial-*"):
            ran_on.setdefault(trial.name, set()).add(machine)
    assert sorted(ran_on) == sorted(rows)
    # the killed trial ran again and kept the dead attempt's record, whichever machine took it over
    s3 = boto3.client("s3")
    [killed_key] = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="registry/")["Contents"]
                    if o["Key"].endswith(f"/{killed_trial}/trial.json")]  # fmt: skip
    attempts = json.loads(s3.get_object(Bucket=bucket, Key=killed_key)["Body"].read())["attempts"]
    assert len(attempts) >= 2 and attempts[0]["pid"] == killed_pid and attempts[-1]["pid"] != killed_pid
    assert os.getpid() not in {a["pid"] for a in attempts}
    for machine in set().union(*ran_on.values()):
        checkout = next((machine / WORKER_FOLDER / "data").glob("*/data/fashion-mnist"))
        assert sorted(p.name for p in checkout.iterdir()) == sorted(
            p.name for p in (workspace / "data/fashion-mnist").iterdir()
        )
        assert (machine / ".cache/headstart/feature-store").is_dir()  # its own store, on its own disk
    # chosen on validation; the chosen trial's folder came back through the bucket and was judged here
    best = max(rows, key=lambda name: (rows[name]["val_accuracy"], -int(name[-2:])))
    assert record["chosen"] == best
    chosen_dir = workspace / "runs/sweep" / best
    split = load_split(workspace / "runs/sweep/split.csv")
    val = split[split["split"] == "val"].assign(split="test")
    assert evaluate(chosen_dir / "model", val).metrics["accuracy"] == pytest.approx(rows[best]["val_accuracy"])
    assert all(rows[name]["run_dir"].startswith(f"{registry_uri}/") for name in rows if name != best)
    summary = json.loads((workspace / "summary.json").read_text())
    assert summary["promoted"] is True
    registry = Registry(S3Storage(bucket, "registry"), "fashion-mnist")
    assert registry.champion() == summary["version"]
    lineage = json.loads((chosen_dir / "model/config.json").read_text())["lineage"]
    assert lineage["sweep_trial"]["trial"] == best and lineage["workspace_commit"] and lineage["data_md5"]
    # no machine's absolute path in what another reads: the workers read the bucket's exchange (nothing in it
    # names the coordinator's disk), the coordinator its sweep folder (nothing in it names a worker's)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="registry/fashion-mnist/runs/")["Contents"]
    exchanged = {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}
    assert not [key for key, data in exchanged.items() if str(workspace).encode() in data]
    local = {str(p): p.read_bytes() for p in (workspace / "runs/sweep").rglob("*") if p.is_file()}
    assert not [name for name, data in {**exchanged, **local}.items() if any(str(m).encode() in data for m in machines)]


def test_a_gpu_pool_worker_that_shares_nothing_clones_pulls_and_registers(
    workspace: Path, data_on_s3: Path, prefect_server: str, seaweedfs, bucket: str, machines: list[Path]
) -> None:
    """The shipped `gpu` deployment's pull step on a worker in an empty folder that cannot see the workspace: the
    run clones the workspace's git remote, pulls its data from the DVC remote and registers into the S3 registry.
    Deployed under a name and pool of its own (the suite's other tests deploy `retrain/gpu` on this server)."""
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment
    from prefect.utilities.templating import apply_values

    from headstart.library.data.versioning import read_dvc_md5
    from headstart.library.data.workspace import set_params_keys

    registry_uri = f"s3://{bucket}/registry"
    set_params_keys(workspace, {"registry.uri": registry_uri, "train.scenario": "features",
                                "health.label_issues": False, "health.drift": False})  # fmt: skip
    subprocess.run(["git", "add", "-A"], cwd=workspace, check=True)
    subprocess.run(["git", "commit", "-qm", "data and params"], cwd=workspace, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=workspace, capture_output=True, text=True).stdout
    git_remote = machines[1] / "workspace.git"  # the workspace's remote: not inside the hidden session folders
    subprocess.run(["git", "clone", "-q", "--bare", str(workspace), str(git_remote)], check=True)
    session = data_on_s3

    shipped = next(d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"] if d["name"] == "gpu")
    # templated as `headstart serve` deploys it (`prefect deploy` fills what the deploying machine sets): the
    # workspace's own path, which the worker cannot see, and no git remote (the worker's environment names it)
    with pytest.MonkeyPatch.context() as deploying:  # `{{ $VAR }}` is read from the deploying process's environment
        deploying.setenv("HEADSTART_WORKSPACE", str(workspace))
        deploying.delenv("HEADSTART_GIT_REMOTE", raising=False)
        shipped = apply_values(shipped, {}, remove_notset=False)
    assert shipped["pull"][0]["flows.workers.workspace_for_run"]["workspace"] == str(workspace)
    pool, name = f"gpu-{uuid.uuid4().hex[:8]}", f"shared-nothing-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        client.create_deployment(
            flow_id=client.create_flow_from_name("retrain"), name=name, work_pool_name=pool,
            entrypoint=shipped["entrypoint"], pull_steps=shipped["pull"],
            job_variables=shipped["work_pool"]["job_variables"],
        )  # fmt: skip
    machine = machines[0]
    env = worker_environment(machine, prefect_server, seaweedfs)
    env |= {"HEADSTART_GIT_REMOTE": f"file://{git_remote}", "HEADSTART_DVC_REMOTE": f"s3://{bucket}/dvc"}
    env["PREFECT_WORKER_QUERY_SECONDS"] = "1"  # polls every second, not every ten
    log = machine.parent / f"{machine.name}.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            without(session, [str(Path(sys.executable).parent / "headstart"), "worker", "prefect", "--pool", pool]),
            cwd=machine, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        run = run_deployment(f"retrain/{name}", timeout=900)
    finally:
        stop([worker])
    assert run.state.is_completed(), f"{run.state}: {log.read_text()[-4000:]}"
    # registered and promoted from the clone: the workspace's commit and data version, in the S3 registry
    registry = Registry(S3Storage(bucket, "registry"), "fashion-mnist")
    champion = registry.champion()
    lineage = json.loads(registry.storage.get(f"fashion-mnist/versions/{champion}/lineage.json"))
    assert lineage["workspace_commit"] == commit.strip()
    assert lineage["data_md5"] == read_dvc_md5(workspace / "data/fashion-mnist.dvc")
    assert not (workspace / "runs").exists()  # nothing ran in the workspace itself
