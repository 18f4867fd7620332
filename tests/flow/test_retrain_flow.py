"""From imported Fashion-MNIST to a fine-tuned, evaluated model: through the Prefect flow and through dvc repro."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from headstart.cli.main import app
from headstart.ground.run_folder import RunFolder
from headstart.library.data.versioning import read_dvc_md5
from headstart.library.registry.registry import Registry
from headstart.library.storage.backends import LocalStorage
from headstart.library.training.feature_store import FeatureStore
from tasks.pipeline import PIPELINE

pytestmark = pytest.mark.slow  # trains models end to end (`pytest -m 'not slow'` skips them)

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def import_data(per_class: int, test_per_class: int) -> None:
    result = runner.invoke(
        app,
        [
            "data",
            "import",
            "fashion-mnist",
            "--per-class",
            str(per_class),
            "--test-per-class",
            str(test_per_class),
        ],
    )
    assert result.exit_code == 0, result.output


def test_flow_fine_tunes_far_above_chance(workspace: Path, prefect_server, fashion_idx_dir) -> None:
    import_data(per_class=30, test_per_class=20)
    result = runner.invoke(
        app,
        [
            "run",
            "--set",
            "train.scenario=finetune",
            "--set",
            "train.epochs=3",
            "--set",
            "train.num_workers=0",
            "--run-dir",
            "runs/e2e",
            "--summary-json",
            "summary.json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((workspace / "summary.json").read_text())
    assert summary["metrics"]["test_images"] == 200
    assert summary["metrics"]["accuracy"] > 0.5, summary["metrics"]  # chance is 0.1
    assert summary["data_md5"] == read_dvc_md5(workspace / "data" / "fashion-mnist.dvc")
    assert summary["test_data_md5"] == read_dvc_md5(workspace / "data" / "fashion-mnist-test.dvc")
    assert summary["scenario"] == "finetune" and summary["split"]["test"] == 200
    lineage = json.loads((workspace / "runs/e2e/model/config.json").read_text())["lineage"]
    assert lineage["flow_run_id"] == summary["run_id"] != "local"
    assert len(lineage["params_sha256"]) == 64 and lineage["packages"]["timm"]
    # the code is named beside the workspace: its version, its checkout's commit, the fingerprint of what ran
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert lineage["code_commit"].removesuffix("-dirty") == head != lineage["workspace_commit"].removesuffix("-dirty")
    assert lineage["headstart_version"] == lineage["packages"]["headstart"] and len(lineage["code_sha256"]) == 64
    card = (workspace / "runs/e2e/model_card.md").read_text()
    assert f"commit `{lineage['code_commit']}`" in card and lineage["code_sha256"] in card
    assert (workspace / "runs/e2e/metrics.json").is_file() and (workspace / "runs/e2e/validate/manifest.csv").is_file()


def test_flow_runs_the_features_scenario(workspace: Path, prefect_server, fashion_idx_dir, tmp_path: Path) -> None:
    import_data(per_class=10, test_per_class=5)
    sets = ["train.scenario=features", "train.classifier=logreg", f"train.feature_cache={tmp_path / 'fc'}"]
    store, volumes = FeatureStore(tmp_path / "fc", 10**9), []
    for run_dir in ("runs/features", "runs/features-again"):
        args = ["run", *[a for s in sets for a in ("--set", s)], "--run-dir", run_dir, "--summary-json", "s.json"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        summary = json.loads((workspace / "s.json").read_text())
        # the health step extracted the features first: training reads them from the store, in both runs
        assert summary["scenario"] == "features" and summary["features_extracted"] == 0
        volumes.append(store.volume())
    assert volumes[0] == volumes[1]  # the second run (same data) stored nothing new: health, training, test set
    assert summary["metrics"]["accuracy"] > 0.4, summary["metrics"]
    assert (workspace / "runs/features/model/classifier.skops").is_file()


def test_flow_stops_on_invalid_data(workspace: Path, prefect_server, fashion_idx_dir) -> None:
    import_data(per_class=3, test_per_class=2)
    (workspace / "data" / "fashion-mnist" / "bag" / "broken.png").write_bytes(b"not a png")
    result = subprocess.run(["headstart", "run", "--run-dir", "runs/bad"], capture_output=True, text=True)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "retrain run failed" in message and "bag/broken.png: not an image" in message
    assert "Traceback" not in result.stdout + result.stderr
    report = json.loads((workspace / "runs/bad/validate/validation.json").read_text())
    assert [f["subject"] for f in report["failures"]] == ["bag/broken.png"]
    assert not (workspace / "runs/bad/model").exists()


def test_dvc_repro_in_an_init_workspace_then_no_op_then_only_train_after_a_code_change(
    workspace: Path, fashion_idx_dir, tmp_path: Path
) -> None:
    import_data(per_class=8, test_per_class=2)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["train"].update(epochs=1, num_workers=0)
    params["model"]["input_size"] = 32
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    first = subprocess.run(["dvc", "repro"], cwd=workspace, capture_output=True, text=True)  # dvc.yaml from init
    assert first.returncode == 0, first.stdout + first.stderr
    dvc_stages = [step.name for step in PIPELINE if step.in_dvc]
    assert [s for s in re.findall(r"Running stage '(\w+)'", first.stdout)] == dvc_stages
    run = RunFolder(workspace / "runs/dvc")
    metrics = json.loads(run.metrics.read_text())
    assert metrics["test_images"] == 20
    version = json.loads(run.registered.read_text())["version"]
    promotion = json.loads(run.promotion.read_text())
    decision = json.loads(run.decision.read_text())
    assert promotion == {
        "version": version,
        "promoted": decision["verdict"] == "PASS",
        "alias_seq": 1,
        "judged_against_seq": 0,
        "rejudged": False,
    }
    registry = Registry(LocalStorage(workspace / "registry"), "fashion-mnist")
    assert [m["version"] for m in registry.versions()] == [version] and registry.champion() == version
    assert json.loads(run.summary.read_text())["version"] == version

    second = subprocess.run(["dvc", "repro"], cwd=workspace, capture_output=True, text=True)
    assert second.returncode == 0 and "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout
    shown = subprocess.run(["dvc", "metrics", "show", "--json"], cwd=workspace, capture_output=True, text=True)
    assert json.loads(shown.stdout)[""]["data"]["runs/dvc/metrics.json"]["data"]["accuracy"] == (metrics["accuracy"])

    # The installed code, as another installation: the same sources at another path (dvc.yaml and dvc.lock
    # pointed there). Then the training loop changes: train is stale, validate and split are not.
    installed = tmp_path / "site-packages"
    for package in ("headstart", "tasks", "flows"):
        shutil.copytree(REPO / package, installed / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "dvc.lock"):
        text = (workspace / name).read_text()
        assert f"{REPO}/headstart/library/training/epochs.py" in text  # absolute: the code is not in the workspace
        (workspace / name).write_text(text.replace(f"{REPO}/", f"{installed}/"))
    assert stale_stages(workspace) == set()
    with (installed / "headstart/library/training/epochs.py").open("a") as loop:
        loop.write("\n# a change to the training loop\n")
    stale = stale_stages(workspace)
    assert "train" in stale and not stale & {"validate", "split"}, stale


def stale_stages(workspace: Path) -> set[str]:
    """Stages `dvc status` lists as changed."""
    done = subprocess.run(["dvc", "status", "--json"], cwd=workspace, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout or "{}"))


def test_artifact_api_down_after_promotion_keeps_a_completed_run_that_agrees_with_the_registry(
    workspace: Path, prefect_server: str, fashion_idx_dir, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.support.faulty_proxy import failing_route

    import_data(per_class=8, test_per_class=3)
    sets = ["train.scenario=features", f"train.feature_cache={tmp_path / 'fc'}", "registry.model_name=no-artifacts"]
    args = ["run", *[a for s in sets for a in ("--set", s)], "--run-dir", "runs/na", "--summary-json", "s.json"]
    with (
        failing_route(prefect_server, "/artifacts/") as (proxy, api_url),
        temporary_settings(updates={PREFECT_API_URL: api_url}),
    ):
        result = runner.invoke(app, args)
    assert proxy.refused >= 1  # the publish step did reach the dead artifact API
    assert result.exit_code == 0, result.output
    summary = json.loads((workspace / "s.json").read_text())
    registry = Registry(LocalStorage(workspace / "registry"), "no-artifacts")
    assert summary["promoted"] is True and registry.champion() == summary["version"]
    on_disk = json.loads(RunFolder(workspace / "runs/na").summary.read_text())
    assert on_disk["promoted"] is True and on_disk["champion"] == registry.champion()
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(summary["run_id"]).state
        of_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[summary["run_id"]]))
        published = client.read_artifacts(artifact_filter=of_run)
    assert state.is_completed(), state
    assert published == []


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"dataset": "../../outside"}, "dataset '../../outside'"),
        ({"run_dir": "/tmp/headstart-elsewhere"}, "run_dir '/tmp/headstart-elsewhere'"),
        ({"run_dir": "../up"}, "run_dir '../up'"),
        ({"overrides": ["data.dir=/etc"]}, "data.dir '/etc'"),
        ({"params_path": "/etc/passwd"}, "params_path '/etc/passwd'"),
    ],
)
def test_path_parameters_outside_the_workspace_fail_the_run_before_anything(
    workspace: Path, prefect_server, parameters: dict, named: str
) -> None:
    from flows.retrain import retrain

    state = retrain(**parameters, return_state=True)  # as a deployment run or an event would pass them
    assert state.is_failed() and f"{named} resolves to" in state.message
    assert "outside the workspace" in state.message
    assert not (workspace / "runs").exists() and not Path("/tmp/headstart-elsewhere").exists()
    assert not (workspace.parent / "up").exists()


def test_classes_named_like_missing_values_survive_to_the_model(
    workspace: Path, prefect_server, tmp_path: Path
) -> None:
    """pandas reads NA, None, null, nan (and more) as missing by default: a class so named vanished after
    validation passed. Every name below must reach the split, the model and its metrics."""
    from tests.support.corpus import png_bytes

    names = ["NA", "None", "null", "nan", "true", "1e3", "0001"]
    for k, name in enumerate(names):
        (tmp_path / "odd" / name).mkdir(parents=True)
        for i in range(12):
            (tmp_path / "odd" / name / f"{i}.png").write_bytes(png_bytes(k * 100 + i, size=32))
    imported = runner.invoke(app, ["data", "import", "folder", str(tmp_path / "odd"), "--name", "odd"])
    assert imported.exit_code == 0, imported.output
    sets = ["train.scenario=features", f"train.feature_cache={tmp_path / 'fc'}", "gate.floors.accuracy=0.0"]
    args = ["run", "--data", "data/odd", *[a for s in sets for a in ("--set", s)]]
    no_test_set = runner.invoke(app, args)  # the shipped data.test_dir does not exist in this workspace
    assert no_test_set.exit_code != 0
    assert "`headstart run --set data.test_dir=null`" in no_test_set.output, no_test_set.output
    result = runner.invoke(app, [*args, "--set", "data.test_dir=null", "--run-dir", "runs/odd"])
    assert result.exit_code == 0, result.output
    # no model name was set: named after the dataset, said first, never registered as the shipped fashion-mnist
    assert result.output.startswith("registry.model_name: odd (the dataset's name"), result.output[:300]
    run = RunFolder(workspace / "runs" / "odd")
    from headstart.library.data.split import load_split

    assert set(load_split(run.split)["label"]) == set(names)
    assert json.loads((run.model / "config.json").read_text())["classes"] == sorted(names)
    assert set(json.loads(run.metrics.read_text())["per_class"]) == set(names)

    # every command that reads params takes --set; predict takes folders (recursively, hidden files skipped)
    listed = runner.invoke(app, ["registry", "ls", "--set", "registry.model_name=odd", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [v["champion"] for v in json.loads(listed.output)] == [True]
    assert not (workspace / "registry" / "fashion-mnist").exists()
    query = tmp_path / "query"
    (query / "deeper").mkdir(parents=True)
    (query / "a.png").write_bytes(png_bytes(1, size=32))
    (query / "deeper" / "b.png").write_bytes(png_bytes(2, size=32))
    (query / ".hidden.png").write_bytes(b"not read")
    (query / "notes.txt").write_text("not an image")
    predicted = runner.invoke(app, ["predict", str(query), "--set", "registry.model_name=odd", "--json"])
    assert predicted.exit_code == 0, predicted.output
    lines = [json.loads(line) for line in predicted.output.splitlines()]
    assert [Path(p["image"]).relative_to(query).as_posix() for p in lines] == ["a.png", "deeper/b.png"]
    assert all(p["label"] in names for p in lines)


def test_a_stalled_step_times_out_naming_it_and_releases_the_slot(
    workspace: Path, prefect_server, seaweedfs, bucket: str, fashion_idx_dir, tmp_path: Path
) -> None:
    """The S3 registry hangs (SIGSTOP) while the gate reads it: the gate's time limit ends the run Failed, naming
    the step, and the model's retrain slot is free again for the next run."""
    from prefect.client.orchestration import get_client

    import_data(per_class=4, test_per_class=2)
    sets = [
        "train.scenario=features",
        f"train.feature_cache={tmp_path / 'fc'}",
        f"registry.uri=s3://{bucket}/registry",
        "registry.model_name=stalled",
        "run.step_timeout_minutes={gate: 0.05}",
        "health.drift=false",  # drift reads the champion's reference from the registry: 30 s of S3 timeouts
    ]
    seaweedfs.freeze()  # nothing before the gate touches the registry
    try:
        result = runner.invoke(app, ["run", *[a for s in sets for a in ("--set", s)]])
    finally:
        seaweedfs.thaw()
    assert result.exit_code != 0
    assert "step gate timed out after 3 s" in result.output, result.output[-2000:]
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name("retrain-stalled").active_slots == 0
        [gate] = client.read_task_runs(  # task runs are named gate-<suffix>; the newest is this run's
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="gate-")),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    assert gate.run_count == 1  # a step out of time is not retried with its whole limit again
    bad = runner.invoke(app, ["run", "--set", "run.step_timeout_minutes={training: 5}"])
    assert bad.exit_code != 0 and "run.step_timeout_minutes names no step ['training']" in bad.output
