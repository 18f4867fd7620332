"""The fault matrix: real retrain runs against a real S3 registry (SeaweedFS), each killed or cut off at the worst
moment of a step boundary, then retried; after each row the registry's invariants are asserted.

Every row starts from a registry with a weaker champion (alias #1), runs a challenger as a separate `headstart run`
process whose S3 traffic goes through a fault proxy, and breaks it:

- killed during register (the manifest upload held: every file is up, the version is not);
- killed between register and promote (as soon as register recorded its version);
- killed during promote after S3 stored the alias entry but before the answer came back;
- S3 down from the manifest upload to the end of the run; later `registry push` completes the version.

The retry is the same command on the same run folder. Invariants afterwards: exactly one champion and it is the
challenger; the alias history is the old one plus exactly one entry, judged against #1; every listed version
verifies file by file; nothing partial is left under versions/; the run made exactly one version; no conflicts,
no stray alias objects.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from headstart.cli.main import app
from headstart.ground.run_folder import RunFolder
from headstart.library.registry.registry import Registry
from headstart.library.storage.backends import S3Storage
from tests.support.faulty_proxy import S3FaultProxy
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow  # runs the pipeline end to end, twice per row

HEADSTART = str(Path(sys.executable).parent / "headstart")
MANIFEST_PUT = rb"PUT /[^ ]*/versions/[^ /]+/MANIFEST\.json "
SECOND_ALIAS = rb"/aliases/champion/00000002\.json"  # the challenger's entry (the first is the weaker champion)


def sets(bucket: str, model: str, cache: Path, data: str) -> list[str]:
    """The run's params: features on a cached backbone (fast), an S3 registry, a gate any better model passes."""
    return [
        "train.scenario=features",
        "train.classifier=logreg",
        f"train.feature_cache={cache}",
        f"registry.uri=s3://{bucket}/registry",
        f"registry.model_name={model}",
        "gate.max_class_recall_drop=1.0",  # judged on accuracy alone: the small test set makes per-class noisy
        "gate.floors.accuracy=0.2",  # the weak champion (3 images a class) must become champion first
        f"data.dir=data/{data}",
    ]


def cli_args(settings: list[str], run_dir: str) -> list[str]:
    return ["run", *[a for s in settings for a in ("--set", s)], "--run-dir", run_dir]


@pytest.fixture(scope="module")
def fault_workspace(tmp_path_factory, seaweedfs, prefect_server, fashion_idx_dir):
    """A workspace with a small dataset (the weaker champion's) and a larger one (the challengers'), one shared
    fixed test set, and a bucket."""
    import boto3

    from tasks.dvc_stages import init_pipeline_workspace
    from tests.support.params import suite_params_template

    base = tmp_path_factory.mktemp("faults")
    env = {**os.environ, "HEADSTART_DVC_REMOTE": str(base / "remote")}
    root = init_pipeline_workspace(base / "ws", suite_params_template(base / "template"))
    for name, per_class, test in (("small", 3, 0), ("fashion-mnist", 20, 10)):
        counts = ["--per-class", str(per_class), "--test-per-class", str(test)]
        done = subprocess.run(
            [HEADSTART, "data", "import", "fashion-mnist", "--name", name, *counts],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    bucket = f"faults-{os.getpid()}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return root, bucket, base / "feature-cache"


@pytest.fixture
def proxy(seaweedfs):
    host, port = seaweedfs.endpoint.removeprefix("http://").split(":")
    relay = S3FaultProxy((host, int(port)))
    relay.serve()
    yield relay
    relay.close()


def headstart(args: list[str], root: Path, proxy: S3FaultProxy) -> subprocess.Popen:
    """A separate `headstart` process whose S3 traffic goes through the proxy (its own process group)."""
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.endpoint, "COLUMNS": "200"}
    return subprocess.Popen(
        [HEADSTART, *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = process.communicate(timeout=timeout)
    return out


def champion_first(root: Path, bucket: str, cache: Path, model: str, monkeypatch) -> Registry:
    """The weaker champion (alias #1), trained on the small dataset in this process."""
    monkeypatch.chdir(root)
    done = CliRunner().invoke(app, cli_args(sets(bucket, model, cache, "small"), f"runs/{model}-champion"))
    assert done.exit_code == 0, done.output
    registry = Registry(S3Storage(bucket, "registry"), model)
    assert [r.seq for r in registry.history()] == [1], done.output
    return registry


def assert_invariants(registry: Registry, before: list, run: RunFolder) -> None:
    """What must hold after any fault and its retry."""
    version = json.loads(run.registered.read_text())["version"]
    history = registry.history()
    assert history[: len(before)] == before, "the alias history was rewritten"
    assert [(r.seq, r.version, r.judged_against_seq) for r in history[len(before) :]] == [(2, version, 1)]
    assert registry.champion() == version
    listed = [m["version"] for m in registry.versions()]
    assert listed == [before[0].version, version], "the run made more than one version"
    for listed_version in listed:
        registry.fetch(listed_version)  # every file's sha256 against the verified manifest
    uploaded = {k.split("/")[-2] for k in registry.storage.list(f"{registry.model}/versions/")}
    assert uploaded == set(listed), f"partial versions left behind: {uploaded - set(listed)}"
    assert registry.conflicts() == [] and registry.stray_aliases() == []
    promotion = json.loads(run.promotion.read_text())
    assert promotion["promoted"] is True and promotion["alias_seq"] == 2


ROWS = (  # (row, what the proxy matches, what it does)
    ("during-register", MANIFEST_PUT, "hold"),
    ("after-register", SECOND_ALIAS, "hold"),  # killed once registered.json exists; the alias PUT held as a guard
    ("during-promote", SECOND_ALIAS, "land"),
)


def break_run(args: list[str], root: Path, proxy: S3FaultProxy, pattern: bytes, action: str, run, row: str) -> None:
    """Start the run with the proxy armed and SIGKILL it at the fault."""
    proxy.arm(pattern, action)
    process = headstart(args, root, proxy)
    if row == "after-register":
        wait_for(lambda: run.registered.is_file() or process.poll() is not None, 300, 0.002, "register")
    else:
        wait_for(lambda: proxy.tripped.is_set() or process.poll() is not None, 300, 0.05, "the fault")
    assert process.poll() is None, f"{row}: the run ended before the fault:\n{finish(process)}"
    kill(process)


def test_runs_killed_at_each_step_boundary_converge_on_retry(fault_workspace, proxy: S3FaultProxy, monkeypatch) -> None:
    """All rows are killed first and retried after: a killed run's retrain slot is a lease that lapses only after
    a minute, and the rows' leases (one model each) lapse side by side."""
    root, bucket, cache = fault_workspace
    killed = {}
    for row, pattern, action in ROWS:
        registry = champion_first(root, bucket, cache, row, monkeypatch)
        before = registry.history()
        run, args = RunFolder(root / "runs" / row), cli_args(sets(bucket, row, cache, "fashion-mnist"), f"runs/{row}")
        break_run(args, root, proxy, pattern, action, run, row)

        # the state the kill left: the champion has not moved unless S3 already holds the new entry
        assert [r.seq for r in registry.history()] == ([1, 2] if action == "land" else [1]), row
        if row == "during-register":
            assert [m["version"] for m in registry.versions()] == [before[0].version]  # nothing partial listed
            assert not run.registered.exists()
        killed[row] = (registry, before, run, args, (run.model / "classifier.skops").read_bytes())

    for row, (registry, before, run, args, trained) in killed.items():
        retry = headstart(args, root, proxy)
        out = finish(retry)
        assert retry.returncode == 0, f"{row}:\n{out}"
        # skops bytes differ on every save: equal bytes mean the retry finished the run without training again
        assert (run.model / "classifier.skops").read_bytes() == trained, f"{row}: the retry trained again"
        assert_invariants(registry, before, run)


def test_s3_down_through_the_end_of_the_run_then_push_and_retry(
    fault_workspace, proxy: S3FaultProxy, monkeypatch
) -> None:
    root, bucket, cache = fault_workspace
    row = "s3-down"
    registry = champion_first(root, bucket, cache, row, monkeypatch)
    before = registry.history()
    run, args = RunFolder(root / "runs" / row), cli_args(sets(bucket, row, cache, "fashion-mnist"), f"runs/{row}")

    proxy.arm(MANIFEST_PUT, "down")
    failed = headstart(args, root, proxy)
    out = finish(failed)
    assert failed.returncode != 0, out
    assert proxy.is_down and registry.history() == before
    assert [m["version"] for m in registry.versions()] == [before[0].version]

    proxy.up()  # S3 is back: the operator pushes the run folder, then reruns the run
    params = root / f"params-{row}.yaml"  # the registry the run used, for the registry commands
    params.write_text(json.dumps({"registry": {"uri": f"s3://{bucket}/registry", "model_name": row}}))
    pushed = headstart(["registry", "push", str(run.root), "--params", str(params)], root, proxy)
    out = finish(pushed)
    assert pushed.returncode == 0, out
    planned = json.loads(run.registering.read_text())["version"]
    assert planned in out  # push completed the version the run began, not a second one
    retry = headstart(args, root, proxy)
    out = finish(retry)
    assert retry.returncode == 0, out
    assert_invariants(registry, before, run)
