"""Importing data leaves it tracked by DVC and pushed; a larger N is a new version holding the old images."""

from __future__ import annotations

import subprocess
from pathlib import Path

from typer.testing import CliRunner

from headstart.cli.main import app
from headstart.library.data.versioning import read_dvc_md5

runner = CliRunner()


def remote_objects(remote: Path) -> set[str]:
    return {p.name for p in remote.rglob("*") if p.is_file()}


def test_fashion_mnist_import_versions_and_pushes(workspace: Path, fashion_idx_dir: Path) -> None:
    first = runner.invoke(app, ["data", "import", "fashion-mnist", "--per-class", "3", "--test-per-class", "2"])
    assert first.exit_code == 0, first.output
    pool, fixed = workspace / "data" / "fashion-mnist", workspace / "data" / "fashion-mnist-test"
    assert sorted(p.name for p in pool.iterdir()) == sorted(
        [
            "ankle_boot",
            "bag",
            "coat",
            "dress",
            "pullover",
            "sandal",
            "shirt",
            "sneaker",
            "t-shirt_top",
            "trouser",
        ]
    )
    v1_files = {p.relative_to(pool) for p in pool.rglob("*.png")}
    assert len(v1_files) == 30 and len(list(fixed.rglob("*.png"))) == 20
    assert all(p.name.startswith("test-") for p in fixed.rglob("*.png"))
    v1 = read_dvc_md5(workspace / "data" / "fashion-mnist.dvc")
    remote = workspace.parent / "remote"
    pushed_v1 = remote_objects(remote)
    assert len(pushed_v1) >= 50  # every image (and the .dir listings) reached the remote

    second = runner.invoke(app, ["data", "import", "fashion-mnist", "--per-class", "5"])
    assert second.exit_code == 0, second.output
    v2_files = {p.relative_to(pool) for p in pool.rglob("*.png")}
    assert v1_files < v2_files and len(v2_files) == 50
    v2 = read_dvc_md5(workspace / "data" / "fashion-mnist.dvc")
    assert v2 != v1 and v2.endswith(".dir")
    assert pushed_v1 < remote_objects(remote)

    status = subprocess.run(
        ["dvc", "status", "--json", "data/fashion-mnist.dvc", "data/fashion-mnist-test.dvc"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout.strip() in ("{}", "")  # workspace matches the .dvc files


def test_folder_import_skips_hidden_files(workspace: Path, tmp_path: Path) -> None:
    from tests.support.corpus import png_bytes

    src = tmp_path / "photos"
    for cls in ("cats", "dogs"):
        (src / cls).mkdir(parents=True)
        for i in range(2):
            (src / cls / f"{i}.png").write_bytes(png_bytes(hash((cls, i)) % 997))
    (src / "cats" / ".DS_Store").write_bytes(b"junk")
    result = runner.invoke(app, ["data", "import", "folder", str(src), "--name", "pets"])
    assert result.exit_code == 0, result.output
    copied = sorted(
        p.relative_to(workspace / "data" / "pets").as_posix() for p in (workspace / "data" / "pets").rglob("*")
    )
    assert copied == ["cats", "cats/0.png", "cats/1.png", "dogs", "dogs/0.png", "dogs/1.png"]
    assert read_dvc_md5(workspace / "data" / "pets.dvc").endswith(".dir")


def test_missing_source_is_a_clear_error(workspace: Path) -> None:
    result = subprocess.run(
        ["headstart", "data", "import", "folder", "no-such-dir", "--name", "x"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "no-such-dir: not a folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (workspace / "data" / "x").exists() and not (workspace / "data" / "x.dvc").exists()


def test_workspace_is_clean_and_init_is_idempotent(workspace: Path) -> None:
    from headstart.library.data.workspace import init_workspace

    def porcelain() -> str:
        return subprocess.run(["git", "status", "--porcelain"], cwd=workspace, capture_output=True, text=True).stdout

    assert porcelain() == ""
    assert (workspace / "params.yaml").read_text() == (Path(__file__).resolve().parents[2] / "params.yaml").read_text()
    local = (workspace / ".dvc" / "config.local").read_text()
    assert str(workspace.parent / "remote") in local  # machine-local remote stays out of git
    (workspace / "params.yaml").write_text("train:\n  epochs: 1\n")
    init_workspace(workspace)
    assert (workspace / "params.yaml").read_text() == "train:\n  epochs: 1\n"  # never overwritten
