"""`headstart init`: a workspace, and with --data your images as its dataset (params.yaml naming them, dvc.yaml
rendered for the folders it names, everything committed); what it refuses leaves nothing made."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import invoke, unboxed
from tests.support.corpus import png_bytes


def image_tree(root: Path, classes=("bolt", "nut"), per_class: int = 3) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i}.png").write_bytes(png_bytes(100 * c + i))
    return root


def git_clean(workspace: Path) -> bool:
    return subprocess.run(["git", "status", "--porcelain"], cwd=workspace, capture_output=True, text=True).stdout == ""


@pytest.fixture(autouse=True)
def own_remote(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HEADSTART_DVC_REMOTE", str(tmp_path / "remote"))
    monkeypatch.chdir(tmp_path)


def test_init_with_data_and_a_test_set_names_both_and_the_model(tmp_path: Path) -> None:
    from dvc.repo import Repo

    images, held_out = image_tree(tmp_path / "shots"), image_tree(tmp_path / "held-out")
    code, output = invoke("init", "ws", "--data", str(images), "--test-data", str(held_out), "--name", "fasteners")
    assert code == 0, output
    params = yaml.safe_load(Path("ws/params.yaml").read_text())
    assert params["data"] == {"dir": "data/fasteners", "test_dir": "data/fasteners-test"}
    assert params["registry"]["model_name"] == "fasteners"
    assert sorted(p.name for p in Path("ws/data/fasteners-test").iterdir()) == ["bolt", "nut"]
    assert Path("ws/data/fasteners.dvc").is_file() and Path("ws/data/fasteners-test.dvc").is_file()
    assert git_clean(tmp_path / "ws")
    dvc_yaml = Path("ws/dvc.yaml").read_text()
    assert "${data.test_dir}" in dvc_yaml and "runs/dvc/validate-test" in dvc_yaml
    with Repo("ws") as repo:  # DVC reads the pipeline
        assert "validate" in {getattr(stage, "name", None) for stage in repo.index.stages}


def test_init_without_a_test_set_splits_by_hash_and_dvc_still_reads_the_pipeline(tmp_path: Path) -> None:
    from dvc.repo import Repo

    code, output = invoke("init", "ws", "--data", str(image_tree(tmp_path / "parts")))
    assert code == 0, output
    params = yaml.safe_load(Path("ws/params.yaml").read_text())
    assert params["data"] == {"dir": "data/parts", "test_dir": None} and params["registry"]["model_name"] == "parts"
    dvc_yaml = Path("ws/dvc.yaml").read_text()
    assert "${data.test_dir}" not in dvc_yaml and "validate-test" not in dvc_yaml  # a null would break DVC
    with Repo("ws") as repo:
        assert "validate" in {getattr(stage, "name", None) for stage in repo.index.stages}
    assert git_clean(tmp_path / "ws")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--test-data", "held-out"], "go with --data"),
        (["--data", "shots", "--name", ".hidden"], "dataset name"),
        (["--data", "shots", "--name", "parts\n"], "dataset name"),  # a final newline is no name
        (["--data", "shots", "--name", "x" * 240], "dataset name"),
        (["--data", "no-such-folder"], "not a folder"),
        (["--data", "shots", "--test-data", "shots"], "overlaps the training images"),
        (["--data", "shots", "--test-data", "shots/nut"], "overlaps the training images"),
        (["--data", "."], "holds the workspace"),
    ],
)
def test_what_init_refuses_leaves_nothing_made(tmp_path: Path, args: list[str], says: str) -> None:
    image_tree(tmp_path / "shots")
    code, output = invoke("init", "ws", *args)
    assert code == 2 and says in unboxed(output)
    assert not Path("ws").exists()  # named before the workspace is made


def test_init_data_into_a_workspace_that_has_it_names_the_import_command(tmp_path: Path) -> None:
    images = image_tree(tmp_path / "parts")
    assert invoke("init", "ws", "--data", str(images))[0] == 0
    before = Path("ws/params.yaml").read_text()
    code, output = invoke("init", "ws", "--data", str(images))
    assert code == 2 and "`headstart data import folder" in output and "--replace`" in output
    assert Path("ws/params.yaml").read_text() == before


def test_an_import_that_fails_midway_leaves_no_half_adopted_dataset(tmp_path: Path) -> None:
    """The push fails after the copy (the remote is a file, not a folder): no data folder, no .dvc file, and
    params.yaml still names the shipped dataset, so running init again starts clean."""
    (tmp_path / "not-a-folder").write_text("")
    images = image_tree(tmp_path / "parts")
    code, _ = invoke("init", "ws", "--data", str(images), "--remote", str(tmp_path / "not-a-folder"))
    assert code != 0
    assert not Path("ws/data/parts").exists() and not Path("ws/data/parts.dvc").exists()
    assert yaml.safe_load(Path("ws/params.yaml").read_text())["data"]["dir"] == "data/fashion-mnist"
    assert invoke("init", "ws", "--data", str(images), "--remote", str(tmp_path / "remote"))[0] == 0
    assert yaml.safe_load(Path("ws/params.yaml").read_text())["data"]["dir"] == "data/parts" and git_clean(Path("ws"))
