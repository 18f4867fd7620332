"""Two runs of the same inputs against the same champion write the same weights, metrics and decision.
`headstart reproduce`: a registered champion rebuilt from its record alone (local registry and DVC remote; then
SeaweedFS, signed, with no local DVC cache) comes out bit-identical, whatever
happened in the workspace since (an image changed and re-imported, params edited); another thread count is another
environment, judged within a tolerance; a record that cannot be replayed (data gone from the remote, lineage
from before, other code) is refused naming why, and nothing is recorded or changed for it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from headstart.cli.main import app
from headstart.ground.params import load_params
from headstart.library.data.versioning import read_dvc_md5, track_and_push
from headstart.library.registry.registry import open_registry
from headstart.library.registry.reproductions import reproductions
from headstart.library.reports.overview import gather_overview, overview_markdown

pytestmark = pytest.mark.slow  # trains, then trains again
runner = CliRunner()
QUICK = ["train.scenario=finetune", "train.epochs=1", "model.input_size=32", "gate.floors.accuracy=0.0",
         "evaluate.transfer_report=false"]  # fmt: skip


def ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


def trained_champion(sets: list[str]) -> str:
    """Import a small Fashion-MNIST, run the pipeline once (it becomes champion) and commit; the version id."""
    ok(["data", "import", "fashion-mnist", "--per-class", "10", "--test-per-class", "5"])
    subprocess.run(["git", "add", "-A"], check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qm", "data"], check=True, capture_output=True)
    ok(["run", *[a for s in [*QUICK, *sets] for a in ("--set", s)], "--run-dir", "runs/first"])
    return json.loads(Path("runs/first/registered.json").read_text())["version"]


def reproduce(*args: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    """The real command (its exit status is the verdict) and the reproduction.json it wrote, if any."""
    done = subprocess.run(["headstart", "reproduce", *args], capture_output=True, text=True, timeout=600)
    out = Path(args[args.index("--out") + 1])
    written = out / "reproduction.json"
    return done, json.loads(written.read_text()) if written.is_file() else None


def test_the_champion_is_rebuilt_bit_for_bit_from_its_record_not_the_workspace(
    workspace: Path, prefect_server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = trained_champion([])
    registry = open_registry(load_params("params.yaml").registry)
    recorded_md5 = read_dvc_md5(Path("data/fashion-mnist.dvc"))
    # two more runs of the same inputs, judged against the same champion (and not promoted): the same files
    for again in ("runs/b", "runs/c"):
        ok(["run", *[a for s in [*QUICK, "gate.min_abs_gain=1.0"] for a in ("--set", s)], "--run-dir", again])
    b, c = Path("runs/b"), Path("runs/c")
    for name in ("model/model.safetensors", "metrics.json", "decision.json", "confusion.csv", "health.json"):
        assert (b / name).read_bytes() == (c / name).read_bytes(), name
    assert json.loads((b / "decision.json").read_text())["champion"] == version  # judged against the champion
    history = registry.history()
    assert [r.version for r in history] == [version]
    # the same run registered on SeaweedFS too, signed, its data pushed to a DVC remote in the same bucket
    monkeypatch.setenv("HS_REPRODUCE_KEY", "a signing secret")
    on_s3 = [f"--set=registry.uri=s3://{bucket}/registry", "--set=registry.signing_key_env=HS_REPRODUCE_KEY"]
    ok(["registry", "push", "runs/first", *on_s3])
    for dvc in (["remote", "add", "bucket", f"s3://{bucket}/dvc", "--local"], ["push", "-r", "bucket", "-q"]):
        subprocess.run(["dvc", *dvc], check=True, capture_output=True)
    # since registration: one image changed and re-imported (a new data version), params edited
    image = sorted(Path("data/fashion-mnist").rglob("*.png"))[0]
    image.write_bytes(sorted(Path("data/fashion-mnist").rglob("*.png"))[-1].read_bytes())
    changed_md5 = track_and_push(Path("data/fashion-mnist")).md5
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["train"]["epochs"], params["model"]["input_size"] = 5, 48
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert changed_md5 != recorded_md5

    done, outcome = reproduce("champion", "--out", "runs/again")
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcome["verdict"] == "identical" and outcome["mode"] == "bitwise", outcome
    assert outcome["files_equal"] and outcome["metrics_equal"] and "model.safetensors" in outcome["files"]
    assert outcome["data"]["data/fashion-mnist"] == recorded_md5  # the recorded version, not the workspace's
    assert f"{version}: identical" in " ".join(done.stdout.split())
    # recorded beside the version; the alias, the workspace's data and params untouched
    assert [r["verdict"] for r in reproductions(registry, version)] == ["identical"]
    assert registry.history() == history
    assert read_dvc_md5(Path("data/fashion-mnist.dvc")) == changed_md5 and image.read_bytes()
    assert yaml.safe_load(Path("params.yaml").read_text())["train"]["epochs"] == 5
    overview = overview_markdown(gather_overview(registry))
    assert f"reproduced on {outcome['at'][:10]}: identical" in overview
    assert "| identical | bit for bit |" in ok(["registry", "show", version, "--card"])

    # on SeaweedFS, from the bucket alone (this machine's DVC cache gone), in a signed registry
    shutil.rmtree(".dvc/cache")
    done, outcome = reproduce(version, "--out", "runs/on-s3", "--remote", f"s3://{bucket}/dvc", *on_s3)
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcome["verdict"] == "identical", outcome
    signed = open_registry(load_params("params.yaml", [s.split("=", 1)[1] for s in on_s3]).registry)
    [record] = reproductions(signed, version)
    assert record["verdict"] == "identical" and record["signature"] and "scratch" not in record
    planted = {**record, "signature": None, "at": "2099-01-01T00:00:00+00:00"}  # written without the key
    signed.storage.put(f"{signed.model}/reproductions/{version}/20990101T000000000000Z-00000000.json",
                       json.dumps(planted).encode())  # fmt: skip
    assert [r["at"] for r in reproductions(signed, version)] == [record["at"]]

    # another thread count: another environment, compared within the tolerance, never called identical
    threads = outcome["rebuilt_environment"]["threads"] + 1
    done, other = reproduce(version, "--out", "runs/threads", "--threads", str(threads), "--tolerance", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert other["mode"] == "tolerance" and other["verdict"] == "within tolerance", other
    assert other["environment_differences"]["threads"] == {"recorded": threads - 1, "rebuilt": threads}
    assert set(other["per_class_deltas"]) == set(json.loads(Path("runs/first/metrics.json").read_text())["per_class"])

    # the remote lacks the data version: refused naming it, nothing recorded
    done, _ = reproduce(version, "--out", "runs/no-data", "--remote", str(workspace.parent / "empty-remote"))
    assert done.returncode == 2 and recorded_md5 in " ".join(done.stderr.split()), done.stderr
    assert len(reproductions(registry, version)) == 2 and not Path("runs/no-data/run").exists()

    # a version registered before lineage recorded enough, and one built by other code
    manifest, _, files = registry.fetch(version)
    summary = {k: manifest[k] for k in ("dataset", "data_md5", "metrics", "decision", "flow_run_id")}
    lineage = json.loads(files["lineage.json"])
    old = {k: v for k, v in lineage.items() if k not in ("params", "environment", "rebuild_code_sha256")}
    older = registry.register({**files, "lineage.json": json.dumps(old).encode()}, summary)
    done, _ = reproduce(older, "--out", "runs/older")
    said = " ".join(done.stderr.split())
    assert done.returncode == 2 and "lacks params (the params as given)" in said and "environment (" in said, said
    other_code = {**lineage, "rebuild_code_sha256": "0" * 64}
    elsewhere = registry.register({**files, "lineage.json": json.dumps(other_code).encode()}, summary)
    done, _ = reproduce(elsewhere, "--out", "runs/elsewhere")
    assert done.returncode == 2 and "built by other code" in " ".join(done.stderr.split()), done.stderr
    assert not Path("runs/elsewhere").exists()  # refused before anything was fetched
    assert reproductions(registry, older) == reproductions(registry, elsewhere) == []
