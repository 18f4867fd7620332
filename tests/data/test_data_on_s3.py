"""Data on S3: a workspace whose DVC remote is a bucket pushes its imports there, commits no endpoint or key, and a
clone elsewhere pulls exactly the data version a run's lineage names."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import dvc.repo  # noqa: F401  (DVC binds its log handler to sys.stdout on import: here, not inside a CliRunner)
import pytest
from typer.testing import CliRunner

from headstart.cli.main import app
from headstart.library.data.versioning import check_remote_url, configured_remote, read_dvc_md5
from tests.support.corpus import png_bytes
from tests.support.seaweedfs import ACCESS_KEY, SECRET_KEY

runner = CliRunner()


def pets(root: Path, per_class: int, salt: int = 0) -> Path:
    """A class-per-folder tree of tiny PNGs."""
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / cls / f"{i}.png").write_bytes(png_bytes((hash((cls, i)) + salt) % 997))
    return root


def file_md5s(root: Path) -> dict[str, str]:
    """relpath → md5 of every file under ``root``."""
    return {
        p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def dir_md5(root: Path) -> str:
    """The DVC directory md5 of ``root``, computed here as DVC defines it (md5 of its sorted JSON listing)."""
    listing = [{"md5": md5, "relpath": rel} for rel, md5 in sorted(file_md5s(root).items())]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


def test_remote_urls_are_checked_before_anything_is_created(tmp_path: Path) -> None:
    assert check_remote_url("s3://my-bucket/dvc/") == "s3://my-bucket/dvc"
    assert check_remote_url("S3://my-bucket") == "s3://my-bucket"
    assert check_remote_url(str(tmp_path / "r")) == str(tmp_path / "r")
    refused = {
        "gs://bucket/x": "unsupported scheme 'gs:'",
        "https://s3.example.com/bucket": "unsupported scheme 'https:'",
        "s3:/bucket/x": "expected s3://BUCKET/PATH",
        "s3://": "is not an S3 bucket name",
        "s3://My_Bucket/x": "'My_Bucket' is not an S3 bucket name",
        "s3://AKIA:secret@bucket/x": "credentials do not belong in the URL",
        "s3://bucket/x?endpoint=http://h": "no query",
    }
    for url, problem in refused.items():
        result = runner.invoke(app, ["init", str(tmp_path / "ws"), "--remote", url])
        assert result.exit_code != 0 and problem in result.output, (url, result.output)
        assert "secret" not in result.output  # a key pasted into the URL is not echoed back
        assert not (tmp_path / "ws").exists()


def test_s3_remote_pushes_commits_no_secret_and_a_clone_pulls_the_lineage_version(
    seaweedfs, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from headstart.ground.params import DataParams, Params
    from headstart.library.lineage import collect

    url = f"s3://{bucket}/dvc"
    ws = tmp_path / "ws"
    assert "AWS_ENDPOINT_URL" in ok(["init", str(ws), "--remote", url])
    monkeypatch.chdir(ws)

    # (a) the import pushes every file and the directory listing to the bucket, under the remote's prefix
    ok(["data", "import", "folder", str(pets(tmp_path / "v1", 2)), "--name", "pets"])
    v1_md5 = read_dvc_md5(ws / "data" / "pets.dvc")
    v1_files = file_md5s(ws / "data" / "pets")
    assert v1_md5 == dir_md5(ws / "data" / "pets")
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = {obj["Key"] for page in pages for obj in page.get("Contents", [])}
    wanted = {f"dvc/files/md5/{m[:2]}/{m[2:]}" for m in [*v1_files.values(), v1_md5]}
    assert wanted <= keys, sorted(wanted - keys)
    git(ws, "add", "data/pets.dvc", "data/.gitignore")
    git(ws, "commit", "-q", "-m", "pets v1")
    v1_commit = git(ws, "rev-parse", "HEAD").strip()
    lineage = collect(ws, Params(data=DataParams(dir="data/pets", test_dir=None)), None)  # a run on v1
    assert (lineage["workspace_commit"], lineage["data_md5"]) == (v1_commit, v1_md5)
    (tmp_path / "lineage.json").write_text(json.dumps(lineage))

    ok(["data", "import", "folder", str(pets(tmp_path / "v2", 3, salt=1)), "--name", "pets", "--replace"])
    v2_md5 = read_dvc_md5(ws / "data" / "pets.dvc")
    git(ws, "commit", "-q", "-am", "pets v2")
    assert v2_md5 != v1_md5 and git(ws, "status", "--porcelain") == ""

    # (b) no committed file (nor any commit) holds a key or the endpoint; the remote lives in config.local only
    endpoint = seaweedfs.endpoint.encode()
    for name in git(ws, "ls-files").splitlines():
        data = (ws / name).read_bytes()
        assert not any(s in data for s in (SECRET_KEY.encode(), ACCESS_KEY.encode(), endpoint)), name
    history = git(ws, "log", "-p", "--all")
    assert not any(s in history for s in (SECRET_KEY, ACCESS_KEY, seaweedfs.endpoint))
    assert ".dvc/config.local" not in git(ws, "ls-files", ".dvc")
    committed = (ws / ".dvc" / "config").read_text()
    assert "remote" not in committed and bucket not in committed
    local = (ws / ".dvc" / "config.local").read_text()
    assert url in local and not any(s in local for s in (SECRET_KEY, ACCESS_KEY, seaweedfs.endpoint))

    # (c) another machine: a clone (no DVC cache, no remote) pulls the exact version the lineage names
    clone = tmp_path / "worker"
    subprocess.run(["git", "clone", "-q", str(ws), str(clone)], check=True)
    monkeypatch.chdir(clone)
    assert configured_remote(clone) is None and not (clone / ".dvc" / "cache").exists()
    ok(["data", "remote", url])
    assert url in ok(["data", "remote"])
    at_head = runner.invoke(app, ["data", "pull", "--lineage", str(tmp_path / "lineage.json")])
    assert at_head.exit_code != 0 and f"git checkout {v1_commit}" in at_head.output
    assert not (clone / "data" / "pets").exists()

    git(clone, "checkout", "-q", v1_commit)
    assert v1_md5 in ok(["data", "pull", "--lineage", str(tmp_path / "lineage.json")])
    assert file_md5s(clone / "data" / "pets") == v1_files  # v1's files exactly: none of v2's
    assert dir_md5(clone / "data" / "pets") == read_dvc_md5(clone / "data" / "pets.dvc") == v1_md5
    assert git(clone, "status", "--porcelain") == ""  # the remote setting and the data stay out of git

    git(clone, "checkout", "-q", "-")  # back to the branch: v2
    ok(["data", "pull"])  # plain `headstart data pull`: the checked-out version
    assert dir_md5(clone / "data" / "pets") == v2_md5


def test_rerunning_init_with_a_remote_replaces_it_in_config_local_only(workspace: Path) -> None:
    committed = (workspace / ".dvc" / "config").read_text()
    ok(["init", str(workspace), "--remote", "s3://other-bucket/datasets/"])
    assert configured_remote(workspace) == "s3://other-bucket/datasets"
    assert (workspace / ".dvc" / "config").read_text() == committed
    assert git(workspace, "status", "--porcelain") == ""
    refused = runner.invoke(app, ["data", "remote", "ftp://host/x"])
    assert refused.exit_code != 0 and "unsupported scheme 'ftp:'" in refused.output
    assert configured_remote(workspace) == "s3://other-bucket/datasets"
    ok(["data", "remote", str(workspace.parent / "remote")])  # and back to the local folder
    assert configured_remote(workspace) == str(workspace.parent / "remote")
