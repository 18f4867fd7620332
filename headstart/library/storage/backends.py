"""Object storage behind one small interface: a local directory or S3 (boto3).

Both backends support create-only writes (``put(..., create_only=True)``), which is all the registry needs for
compare-and-set: on S3 it is ``If-None-Match: *`` (SeaweedFS never let two such writers win; ``If-Match`` did),
locally an ``os.link`` that fails when the name exists. A create-only write that finds an object with exactly its
own bytes succeeds: that is a retry of a write that landed (botocore retries a PUT whose response was lost), not
a conflict. Local writes are durable (file and folder fsynced before and after the publishing rename) and
readable per the umask.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from headstart.ground.errors import HeadstartError


class StorageError(HeadstartError):
    """The storage backend failed (unreachable, refused) after its retries."""


class ObjectNotFound(StorageError):
    """No object under that key."""


class ObjectExists(StorageError):
    """A create-only write lost: an object already exists under that key (S3: 412)."""


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` would race other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def fsync_dir(directory: Path) -> None:
    """Make a rename or link inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Storage(Protocol):
    """The whole interface: four verbs over ``/``-separated keys."""

    uri: str

    def put(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        """Write ``data``; with ``create_only`` raise ObjectExists instead of replacing an object."""

    def get(self, key: str) -> bytes:
        """Read an object or raise ObjectNotFound."""

    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, sorted."""

    def exists(self, key: str) -> bool:
        """Whether an object exists under ``key``."""

    def delete(self, key: str) -> None:
        """Remove an object (housekeeping only; nothing else ever deletes); a missing one is no error."""


class LocalStorage:
    """A directory; writes go to a temporary file first, so readers never see half an object."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.uri = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"{key}: key escapes the storage root {self.root}")
        return path

    def put(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        path = self._path(key)
        try:
            self._put(path, data, create_only)
        except PermissionError as exc:
            raise StorageError(f"{exc.filename or path}: permission denied writing {self.uri}/{key}") from None

    def _put(self, path: Path, data: bytes, create_only: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600: other users (a worker image) could not read
            if create_only:
                try:
                    os.link(tmp, path)  # atomic create-or-fail
                except FileExistsError:
                    if path.read_bytes() != data:
                        raise ObjectExists(
                            f"{self.uri}/{path.relative_to(self.root).as_posix()} already exists"
                        ) from None
            else:
                os.replace(tmp, path)
            fsync_dir(path.parent)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.uri}/{key} not found") from None
        except PermissionError as exc:
            raise StorageError(f"{exc.filename}: permission denied reading {self.uri}/{key}") from None

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return []
        files = [p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")]
        return sorted(p.relative_to(self.root).as_posix() for p in files)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        if path.parent.exists():
            fsync_dir(path.parent)


class S3Storage:
    """A bucket and key prefix through boto3: endpoint and credentials come from the standard AWS environment
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or a profile); never logged."""

    def __init__(self, bucket: str, prefix: str = "", client=None, attempts: int = 4) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = client or make_s3_client(attempts)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(f"s3://{self.bucket}/{kwargs.get('Key', '')} not found") from None
            if code == "PreconditionFailed" or status == 412:
                raise ObjectExists(f"s3://{self.bucket}/{kwargs.get('Key', '')} already exists (412)") from None
            raise StorageError(f"{what} {self.uri}: {code or status}: {exc}") from None
        except BotoCoreError as exc:  # connection refused, timeouts: after botocore's retries with backoff
            raise StorageError(f"{what} {self.uri} failed after retries: {exc}") from None

    def put(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        extra = {"IfNoneMatch": "*"} if create_only else {}
        try:
            self._call("put", self.client.put_object, Key=self._key(key), Body=data, **extra)
        except ObjectExists:
            if self.get(key) != data:  # equal bytes: our own earlier attempt landed and only its answer was lost
                raise

    def get(self, key: str) -> bytes:
        return self._call("get", self.client.get_object, Key=self._key(key))["Body"].read()

    def list(self, prefix: str) -> list[str]:
        keys, token = [], None
        strip = len(self.prefix) + 1 if self.prefix else 0
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._call("list", self.client.list_objects_v2, Prefix=self._key(prefix), **extra)
            keys += [obj["Key"][strip:] for obj in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = page["NextContinuationToken"]

    def exists(self, key: str) -> bool:
        try:
            self._call("head", self.client.head_object, Key=self._key(key))
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call("delete", self.client.delete_object, Key=self._key(key))


def make_s3_client(attempts: int = 4, read_timeout: float = 5):
    """A boto3 S3 client with botocore's standard retries (exponential backoff) and short timeouts."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=2,
        read_timeout=read_timeout,
        s3={"addressing_style": "path"},
    )
    return boto3.client("s3", config=config)


def open_storage(uri: str) -> Storage:
    """``file://PATH`` (or a plain path) → LocalStorage; ``s3://bucket/prefix`` → S3Storage."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"{uri}: expected s3://bucket/prefix")
        return S3Storage(parsed.netloc, parsed.path)
    if parsed.scheme in ("file", ""):
        path = parsed.netloc + parsed.path if parsed.scheme == "file" else uri
        return LocalStorage(Path(path))
    raise StorageError(f"{uri}: unsupported storage; use file://PATH or s3://bucket/prefix")


def split_object_uri(uri: str) -> tuple[Storage, str]:
    """``s3://bucket/path/to/object`` → (storage for the bucket, key)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.path.strip("/"):
        raise StorageError(f"{uri}: expected s3://bucket/key")
    return S3Storage(parsed.netloc), parsed.path.lstrip("/")
