"""`headstart data ...` and `headstart validate`: imports go through DVC to the remote, pull brings a version
back, validate's exit status is its verdict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import invoke, unboxed
from tests.cli.test_workspace_commands import image_tree


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("HEADSTART_DVC_REMOTE", str(tmp_path / "remote"))
    assert invoke("init", str(tmp_path / "ws"))[0] == 0
    monkeypatch.chdir(tmp_path / "ws")
    return tmp_path / "ws"


def test_import_then_pull_brings_the_version_back_from_the_remote(workspace: Path, tmp_path: Path) -> None:
    code, output = invoke("data", "import", "folder", str(image_tree(tmp_path / "src")), "--name", "parts")
    assert code == 0 and "pushed to" in output
    shutil.rmtree(workspace / "data" / "parts")
    shutil.rmtree(workspace / ".dvc" / "cache")  # only the remote has it now
    code, output = invoke("data", "pull", "data/parts")
    assert code == 0 and sorted(p.name for p in (workspace / "data" / "parts").iterdir()) == ["bolt", "nut"]


def test_remote_shows_and_sets_the_remote(workspace: Path, tmp_path: Path) -> None:
    def shown() -> str:  # the console wraps a long path at its width: compare it unwrapped
        return invoke("data", "remote")[1].replace("\n", "")

    assert str(tmp_path / "remote") in shown()
    code, _ = invoke("data", "remote", str(tmp_path / "elsewhere"))
    assert code == 0 and str(tmp_path / "elsewhere") in shown()
    assert invoke("data", "remote", "ftp://host/x")[0] == 2  # an unsupported scheme: refused


def test_pull_takes_folders_or_a_lineage_not_both(workspace: Path) -> None:
    code, output = invoke("data", "pull", "data/parts", "--lineage", "lineage.json")
    assert code == 2 and "not both" in unboxed(output)


def test_validate_exit_status_is_the_verdict_and_json_the_report(workspace: Path, tmp_path: Path) -> None:
    good = image_tree(tmp_path / "good")
    code, output = invoke("validate", str(good), "--json", "--out", str(tmp_path / "report"))
    assert code == 0 and json.loads(output)["success"] is True
    (good / "nut" / "broken.png").write_bytes(b"not a png")
    code, output = invoke("validate", str(good), "--json", "--out", str(tmp_path / "report"))
    report = json.loads(output)
    assert code == 1 and report["success"] is False
    assert any("broken.png" in failure["subject"] for failure in report["failures"])
