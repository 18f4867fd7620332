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
