"""One contract, two backends: a local directory and S3 on a real SeaweedFS server."""

from __future__ import annotations

from pathlib import Path

import pytest

from headstart.library.storage.backends import (
    LocalStorage,
    ObjectExists,
    ObjectNotFound,
    S3Storage,
    StorageError,
    open_storage,
)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path: Path):
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    return S3Storage(request.getfixturevalue("bucket"), "some/prefix")


def test_put_get_list_exists(storage) -> None:
    storage.put("m/versions/a/one.bin", b"1")
    storage.put("m/versions/a/two.bin", b"22")
    storage.put("m/aliases/x.json", b"{}")
    assert storage.get("m/versions/a/two.bin") == b"22"
    assert storage.list("m/versions/") == ["m/versions/a/one.bin", "m/versions/a/two.bin"]
    assert storage.list("nothing/") == []
    assert storage.exists("m/aliases/x.json") and not storage.exists("m/aliases/y.json")
    storage.put("m/aliases/x.json", b"replaced")  # a plain put replaces
    assert storage.get("m/aliases/x.json") == b"replaced"


def test_missing_object(storage) -> None:
    with pytest.raises(ObjectNotFound, match="nope"):
        storage.get("m/nope")


def test_create_only_never_replaces(storage) -> None:
    storage.put("m/aliases/champion/00000001.json", b"first", create_only=True)
    with pytest.raises(ObjectExists):
        storage.put("m/aliases/champion/00000001.json", b"second", create_only=True)
    assert storage.get("m/aliases/champion/00000001.json") == b"first"


def test_open_storage_parses_uris(tmp_path: Path, seaweedfs) -> None:
    local = open_storage(f"file://{tmp_path}/reg")
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "reg").resolve()
    remote = open_storage("s3://bucket-name/a/b")
    assert isinstance(remote, S3Storage) and (remote.bucket, remote.prefix) == ("bucket-name", "a/b")
    with pytest.raises(StorageError, match="unsupported"):
        open_storage("ftp://x/y")
    with pytest.raises(StorageError, match="escapes"):
        local.put("../outside", b"x")


def test_a_folder_mirrored_through_storage_comes_back_whole_and_filtered(storage, tmp_path: Path) -> None:
    """copy_objects (a trial's folder between machines): relative names under the prefix, the filter applied, each
    file back as it was. (A key climbing out with `..` cannot be made here: SeaweedFS refuses it with
    InvalidRequest, a folder resolves it inside itself, and a folder target refuses an escaping name.)"""
    from headstart.library.storage.exchange import copy_objects

    source = tmp_path / "trial"
    (source / "model").mkdir(parents=True)
    (source / "model/config.json").write_text("{}")
    (source / "checkpoints").mkdir()
    (source / "checkpoints/epoch-1.safetensors").write_bytes(b"x" * 10)
    (source / "trial.json").write_text('{"result": 1}')
    sent = copy_objects(
        LocalStorage(source), "", storage, "runs/s/trial-00", lambda n: not n.startswith("checkpoints/")
    )
    assert sent == ["model/config.json", "trial.json"]
    assert storage.list("runs/s/") == ["runs/s/trial-00/model/config.json", "runs/s/trial-00/trial.json"]
    storage.put("runs/s/trial-001/other.json", b"not this trial's")  # a prefix that only starts the same
    back = tmp_path / "back" / "trial-00"
    assert copy_objects(storage, "runs/s/trial-00", LocalStorage(back)) == sent
    assert (back / "model/config.json").read_text() == "{}" and (back / "trial.json").read_text() == '{"result": 1}'
    assert sorted(p.relative_to(back).as_posix() for p in back.rglob("*") if p.is_file()) == sent
    with pytest.raises(StorageError, match="escapes"):
        LocalStorage(back).put("../escape.txt", b"out")
