"""The full champion/challenger loop through the flow, with the registry on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from headstart.cli.main import app

pytestmark = pytest.mark.slow  # trains models end to end (`pytest -m 'not slow'` skips them)

runner = CliRunner()


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result.output


def use_s3_registry(workspace: Path, bucket: str) -> None:
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["registry"]["uri"] = f"s3://{bucket}/registry"
    params["train"].update(epochs=2, num_workers=0)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run(name: str) -> dict:
    cli("run", "--run-dir", f"runs/{name}", "--summary-json", f"runs/{name}.json")
    return json.loads(Path(f"runs/{name}.json").read_text())


def test_first_run_promoted_second_judged_against_champion(workspace, prefect_server, bucket, fashion_idx_dir):
    use_s3_registry(workspace, bucket)
    cli("data", "import", "fashion-mnist", "--per-class", "20", "--test-per-class", "10")
    first = run("v1")
    assert first["decision"]["verdict"] == "PASS" and first["decision"]["champion"] is None
    assert {r["rule"] for r in first["decision"]["rules"]} == {
        "floor accuracy",
        "champion",
        "test leaks",
        "label issues",
    }
    assert first["champion"] == first["version"] and first["registry"] == f"s3://{bucket}/registry"

    cli("data", "import", "fashion-mnist", "--per-class", "30")  # data v2: more images per class
    second = run("v2")
    assert second["data_md5"] != first["data_md5"]
    decision = second["decision"]
    assert decision["champion"] == first["version"]  # scored against the champion on the same, new test split
    rules = {r["rule"]: r for r in decision["rules"]}
    assert {"split params", "gain accuracy", "relative gain accuracy", "recall bag"} <= set(rules)
    assert rules["split params"]["verdict"] == "PASS"
    expected_champion = second["version"] if decision["verdict"] == "PASS" else first["version"]
    assert second["champion"] == expected_champion
    # data health: drift is measured against the first version's registered reference sample (same distribution)
    assert first["health"]["drift_mmd2"] is None and second["health"]["drift_p_value"] > 0.01
    assert rules["data drift"]["verdict"] == "INFO" and rules["95% CI of gain accuracy"]["verdict"] == "INFO"
    files = json.loads(cli("registry", "show", second["version"], "--json"))["manifest"]["files"]
    assert {"health.json", "health_reference.safetensors", "near_duplicates.json"} <= set(files)
    from flows.watch import drift_of_folder
    from headstart.ground.params import load_params
    from headstart.library.registry.registry import open_registry

    params = load_params(Path("params.yaml"))
    event_drift = drift_of_folder(Path("data/fashion-mnist"), params, open_registry(params.registry))
    assert event_drift["champion"] == expected_champion and event_drift["p_value"] > 0.01  # what the watcher sends

    listed = json.loads(cli("registry", "ls", "--json"))
    assert [v["id"] for v in listed] == [first["version"], second["version"]]
    assert [v["champion"] for v in listed] == [v["id"] == expected_champion for v in listed]
    assert listed[0]["data_md5"] == first["data_md5"] and listed[1]["decision"] == decision["verdict"]
    assert listed[1]["metrics"]["accuracy"] == second["metrics"]["accuracy"]

    other = first["version"] if expected_champion == second["version"] else second["version"]
    cli("registry", "promote", other, "--force")
    cli("registry", "rollback")
    shown = json.loads(cli("registry", "show", "champion", "--json"))
    assert shown["manifest"]["version"] == expected_champion
    assert [h["action"] for h in shown["history"]][-2:] == ["manual-promote", "rollback"]
    card = Path("runs/v2/model_card.md").read_text()
    assert "## Gate" in card and f"champion {first['version']}" in card

    # (before the tampering below: a version whose bytes were changed is, rightly, not the same version)
    pushed = cli("registry", "push", "runs/v1")  # pushing a registered run again: the same version, no second one
    assert f"registered {first['version']}" in pushed
    assert len(json.loads(cli("registry", "ls", "--json"))) == 2
    cli("registry", "pull", "champion", "pulled")
    assert json.loads(Path("pulled/config.json").read_text())["lineage"]["flow_run_id"]
    boto3.client("s3").put_object(
        Bucket=bucket, Key=f"registry/fashion-mnist/versions/{expected_champion}/model.safetensors", Body=b"tampered"
    )
    refused = runner.invoke(app, ["registry", "pull", "champion", "pulled-again"])
    assert refused.exit_code != 0 and "model.safetensors: sha256 does not match" in refused.output
    assert not Path("pulled-again").exists()

    assert_dashboards(second, earlier_run=first["run_id"])


def assert_dashboards(summary: dict, earlier_run: str) -> None:
    """Keyed artifacts keep one entry per run; the latest shows this run's decision, metrics and images. (Other
    tests on the session's server publish under the same keys: only this test's two runs are looked at.)"""
    import base64
    import re

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = summary["artifacts"]
    with get_client(sync_client=True) as client:
        found = {
            what: client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            for what, key in keys.items()
        }
    runs = {earlier_run, summary["run_id"]}
    found = {what: [a for a in items if str(a.flow_run_id) in runs] for what, items in found.items()}
    assert {str(a.flow_run_id) for a in found["decision"]} == runs  # both runs, history kept under one key
    latest = {what: max(items, key=lambda a: a.created) for what, items in found.items()}
    assert {str(a.flow_run_id) for a in latest.values()} == {summary["run_id"]}
    assert f"**Decision: {summary['decision']['verdict']}**" in latest["decision"].data
    assert latest["decision"].flow_run_id is not None
    overall = [row for row in json.loads(latest["metrics"].data) if row["class"] == "overall"]
    assert overall[0]["accuracy"] == round(summary["metrics"]["accuracy"], 4)
    [uri] = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", latest["confusion"].data)
    assert base64.b64decode(uri)[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["version"] in latest["registry"].data and "## Gate" in latest["model-card"].data
    assert_augmentation_preview(latest["augmentation"].data)


def assert_augmentation_preview(markdown: str) -> None:
    """The preview is one inline PNG, a grid of 4 rows (classes) x 6 columns (original + 5 draws) of image tiles,
    told apart by the white gutters between them; every tile shows an image (not a blank frame). (That draws
    differ from the original is tested on the data: tests/code/test_overview.py.)"""
    import base64
    import io
    import re

    import numpy as np
    from PIL import Image

    [uri] = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", markdown)
    grid = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri))).convert("L"), dtype=np.int16)
    assert grid.shape[1] >= 6 * 100 and grid.shape[0] >= 4 * 100, grid.shape  # tiles of >= 100 px

    def spans(inked: np.ndarray) -> list[tuple[int, int]]:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], inked.astype(int), [0]])))
        return [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a > 20]  # not a label

    columns = spans((grid < 250).mean(axis=0) > 0.3)
    rows = spans((grid < 250).mean(axis=1) > 0.3)
    assert (len(rows), len(columns)) == (4, 6), (rows, columns)
    for top, bottom in rows:
        for left, right in columns:
            tile = grid[top + 3 : bottom - 3, left + 3 : right - 3]  # inside the frame
            assert tile.std() > 5, f"a blank tile at {top},{left}"
