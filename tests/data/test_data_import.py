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
    # the workspace fixture's template: the repository's params.yaml, frozen features at 64 px (tests/support/params.py)
    assert (workspace / "params.yaml").read_text() == (workspace.parent / "template" / "params.yaml").read_text()
    local = (workspace / ".dvc" / "config.local").read_text()
    assert str(workspace.parent / "remote") in local  # machine-local remote stays out of git
    (workspace / "params.yaml").write_text("train:\n  epochs: 1\n")
    init_workspace(workspace)
    assert (workspace / "params.yaml").read_text() == "train:\n  epochs: 1\n"  # never overwritten


def pet_tree(root: Path, per_class: int, salt: int = 0) -> Path:
    from tests.support.corpus import png_bytes

    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / cls / f"{i}.png").write_bytes(png_bytes((hash((cls, i)) + salt) % 997))
    return root


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_hostile_dataset_names_are_refused_and_nothing_is_touched(workspace: Path, tmp_path: Path) -> None:
    src = pet_tree(tmp_path / "photos", 2)
    before = sorted(p.name for p in workspace.iterdir())
    for name in ("..", ".", "../x", "a/b", "/tmp/x", ".hidden", "-rf", ""):
        result = runner.invoke(app, ["data", "import", "folder", str(src), "--name", name])
        assert result.exit_code != 0, name
        assert "dataset name" in result.output, (name, result.output)
        assert sorted(p.name for p in workspace.iterdir()) == before  # git, params, data: all still there
    refused = runner.invoke(app, ["data", "import", "fashion-mnist", "--name", "..", "--per-class", "1"])
    assert refused.exit_code != 0 and "dataset name" in refused.output


def test_an_existing_dataset_is_replaced_only_when_asked_and_only_whole(workspace: Path, tmp_path: Path) -> None:
    pets = workspace / "data" / "pets"
    assert (
        runner.invoke(app, ["data", "import", "folder", str(pet_tree(tmp_path / "v1", 2)), "--name", "pets"]).exit_code
        == 0
    )
    v1 = tree_bytes(pets)
    v2_src = pet_tree(tmp_path / "v2", 3, salt=1)
    refused = runner.invoke(app, ["data", "import", "folder", str(v2_src), "--name", "pets"])
    assert refused.exit_code != 0 and "--replace" in refused.output
    assert tree_bytes(pets) == v1
    replaced = runner.invoke(app, ["data", "import", "folder", str(v2_src), "--name", "pets", "--replace"])
    assert replaced.exit_code == 0, replaced.output
    assert tree_bytes(pets) == tree_bytes(v2_src)
    assert sorted(p.name for p in (workspace / "data").iterdir() if "pets" in p.name) == ["pets", "pets.dvc"]
    inside = runner.invoke(app, ["data", "import", "folder", str(pets / "cats"), "--name", "pets", "--replace"])
    assert inside.exit_code != 0 and "which the import would replace" in inside.output
    assert tree_bytes(pets) == tree_bytes(v2_src)


def test_an_import_killed_midway_leaves_the_old_dataset_intact(workspace: Path, tmp_path: Path) -> None:
    import os
    import signal
    import sys

    from tests.support.waiting import wait_for

    pets = workspace / "data" / "pets"
    assert (
        runner.invoke(app, ["data", "import", "folder", str(pet_tree(tmp_path / "v1", 2)), "--name", "pets"]).exit_code
        == 0
    )
    v1 = tree_bytes(pets)
    big = tmp_path / "big"
    for cls in ("cats", "dogs"):  # enough files that the copy is still running when the kill lands
        (big / cls).mkdir(parents=True)
        for i in range(3000):
            (big / cls / f"{i}.png").write_bytes(b"x" * 2048)
    headstart = str(Path(sys.executable).parent / "headstart")
    process = subprocess.Popen(
        [headstart, "data", "import", "folder", str(big), "--name", "pets", "--replace"], cwd=workspace
    )
    staging = lambda: [p for p in (workspace / "data").glob(".pets.incoming-*") if any(p.rglob("*.png"))]  # noqa: E731
    wait_for(lambda: staging() or process.poll() is not None, 120, 0.01, "the import to start copying")
    assert process.poll() is None, "the import finished before the kill"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert tree_bytes(pets) == v1  # the old dataset, byte for byte

    again = runner.invoke(
        app, ["data", "import", "folder", str(pet_tree(tmp_path / "v3", 1, 2)), "--name", "pets", "--replace"]
    )
    assert again.exit_code == 0, again.output
    assert not list((workspace / "data").glob(".pets.incoming-*"))  # the killed import's leftovers are gone


def test_import_never_follows_links_out_of_the_source_nor_opens_fifos(workspace: Path, tmp_path: Path) -> None:
    import os

    src = pet_tree(tmp_path / "photos", 2)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "id_rsa.png").write_bytes(b"PRIVATE KEY")
    (src / "cats" / "stolen").symlink_to(secrets)  # a linked folder
    (src / "cats" / "key.png").symlink_to(secrets / "id_rsa.png")  # a linked file outside
    (src / "dogs" / "alias.png").symlink_to(src / "dogs" / "0.png")  # a link inside the source: copied
    os.mkfifo(src / "dogs" / "pipe.png")  # opening it would block forever

    result = subprocess.run(
        ["headstart", "data", "import", "folder", str(src), "--name", "pets"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pets = workspace / "data" / "pets"
    assert sorted(tree_bytes(pets)) == ["cats/0.png", "cats/1.png", "dogs/0.png", "dogs/1.png", "dogs/alias.png"]
    assert not any(b"PRIVATE KEY" in data for data in tree_bytes(pets).values())
    assert not [p for p in (workspace.parent / "remote").rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    for named in (
        "cats/stolen: link to a folder",
        "cats/key.png: link leaving the source",
        "dogs/pipe.png: not a regular file",
    ):
        assert named in result.stdout, result.stdout


def test_an_import_while_another_runs_in_the_same_data_folder_is_refused(workspace: Path, tmp_path: Path) -> None:
    import fcntl
    import os

    data = workspace / "data"
    data.mkdir(exist_ok=True)
    fd = os.open(data, os.O_RDONLY)  # what a running import holds
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = runner.invoke(app, ["data", "import", "folder", str(pet_tree(tmp_path / "v1", 1)), "--name", "pets"])
    finally:
        os.close(fd)
    assert result.exit_code != 0 and "another import is running" in result.output
    assert not (data / "pets").exists() and not [p for p in data.iterdir() if p.name.startswith(".pets")]
