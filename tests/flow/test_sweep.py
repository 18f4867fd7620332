"""`headstart sweep` on a real Dask LocalCluster (two worker processes) under the session's Prefect server: every
trial scored on validation, the best chosen and judged like any run, and a killed worker's trial run again
without losing the others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from headstart.cli.main import app
from headstart.library.data.split import load_split
from headstart.library.evaluation.metrics import evaluate
from headstart.library.registry.registry import Registry
from headstart.library.storage.backends import LocalStorage
from tasks.sweep import Trial, run_trial, trial_params
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow
KILLED = "trial-02"  # the fine-tune: the longest trial, killed once it has started

TRIALS = [
    {"train.scenario": "features", "train.classifier": "logreg"},
    {"train.scenario": "features", "train.classifier": "random_forest"},
    {"train.scenario": "finetune", "train.epochs": 2},
    {"train.scenario": "features", "train.classifier_c": 0.01},
    {"train.scenario": "features", "model.backbone": "no_such_backbone"},  # fails for good, never retried
]


def test_a_sweep_on_two_dask_workers_picks_the_best_on_validation_and_survives_a_killed_worker(
    workspace: Path, prefect_server: str, fashion_idx_dir, tmp_path: Path
) -> None:
    imported = CliRunner().invoke(
        app, ["data", "import", "fashion-mnist", "--per-class", "12", "--test-per-class", "4"]
    )
    assert imported.exit_code == 0, imported.output
    (workspace / "sweep.yaml").write_text(yaml.safe_dump({"trials": TRIALS}))
    command = [
        "headstart", "sweep", "sweep.yaml", "--cluster", "local:2", "--run-dir", "runs/sweep",
        "--set", "train.num_workers=0", "--set", f"train.feature_cache={json.dumps(str(tmp_path / 'fc'))}",
        "--set", "health.label_issues=false", "--set", "health.drift=false",  # tested elsewhere; not what is judged
        "--summary-json", "summary.json",
    ]  # fmt: skip
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sweep_dir = workspace / "runs/sweep"
    first = wait_for(lambda: attempts(sweep_dir / KILLED / "trial.json"), 240, 0.05, f"{KILLED} to start")
    os.kill(first[0]["pid"], signal.SIGKILL)  # the Dask worker process running it
    output, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, output[-4000:]

    # the killed trial ran again in another worker process; every other trial ran once; the failed one is
    # recorded with its error (an expected failure: not retried) and lost none of the others
    record = json.loads((workspace / "runs/sweep/sweep.json").read_text())
    rows = {row["trial"]: row for row in record["trials"]}
    assert sorted(rows) == ["trial-00", "trial-01", "trial-02", "trial-03", "trial-04"]
    failed = rows.pop("trial-04")
    assert (
        "Unknown model (no_such_backbone)" in failed["error"] and len(attempts(sweep_dir / "trial-04/trial.json")) == 1
    )
    assert all("error" not in row for row in rows.values()), rows
    killed = attempts(sweep_dir / KILLED / "trial.json")
    assert len(killed) >= 2 and killed[-1]["pid"] != first[0]["pid"]
    assert all(rows[name]["attempts"] == 1 for name in rows if name != KILLED)

    # chosen on validation: the recorded scores are each model's own on the validation rows, and the best wins
    split = load_split(workspace / "runs/sweep/split.csv")
    val = split[split["split"] == "val"].assign(split="test")
    scores = {name: evaluate(Path(row["run_dir"]) / "model", val).metrics["accuracy"] for name, row in rows.items()}
    assert scores == pytest.approx({name: row["val_accuracy"] for name, row in rows.items()})
    best = max(rows, key=lambda name: (scores[name], -int(name[-2:])))  # the first on a tie
    assert record["chosen"] == best and record["chosen_by"] == "val_accuracy"
    # only the chosen trial went on to the test split, the gate and the registry
    judged = [name for name in rows if (workspace / "runs/sweep" / name / "metrics.json").exists()]
    assert judged == [best]
    summary = json.loads((workspace / "summary.json").read_text())
    assert summary["run_dir"] == f"runs/sweep/{best}" and summary["promoted"] is True
    registry = Registry(LocalStorage(workspace / "registry"), "fashion-mnist")
    assert registry.champion() == summary["version"]
    lineage = json.loads((Path(summary["model_dir"]) / "config.json").read_text())["lineage"]
    assert lineage["sweep_trial"] == {"sweep": "sweep", "trial": best, "overrides": TRIALS[int(best[-2:])]}
    assert_sweep_table(summary, [*rows, "trial-04"], best)
    # run again in the same folder (e.g. after a failed register), a scored trial is read back, never retrained:
    # its model may be the one a gate judged
    chosen = Path(summary["model_dir"]) / "model.safetensors"
    before = chosen.stat().st_mtime_ns
    params = trial_params(workspace / "params.yaml", [], Trial(int(best[-2:]), TRIALS[int(best[-2:])]))
    again = run_trial(params, sweep_dir, Trial(int(best[-2:]), TRIALS[int(best[-2:])]), None, None)
    assert again == rows[best] and chosen.stat().st_mtime_ns == before


def attempts(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text())["attempts"]
    except (FileNotFoundError, ValueError, KeyError):
        return []


def assert_sweep_table(summary: dict, rows: dict, best: str) -> None:
    """The sweep table artifact of this flow run lists every trial and marks the chosen one."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        of_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[summary["run_id"]]))
        tables = [a for a in client.read_artifacts(artifact_filter=of_run) if a.key == "fashion-mnist-sweep"]
    assert len(tables) == 1
    table = tables[0].data if isinstance(tables[0].data, list) else json.loads(tables[0].data)
    assert [row["trial"] for row in table] == sorted(rows)
    assert [row["trial"] for row in table if row["status"] == "chosen"] == [best]
    assert [row["trial"] for row in table if row["status"].startswith("failed: ")] == ["trial-04"]
