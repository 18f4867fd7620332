"""Shared by the registry tests: a registry on each backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from headstart.library.registry.registry import Registry
from headstart.library.storage.backends import LocalStorage, S3Storage


@pytest.fixture(params=["local", "s3"])
def registry(request, tmp_path: Path) -> Registry:
    """One model's registry on a local directory, then on the session's SeaweedFS (a fresh bucket)."""
    if request.param == "local":
        return Registry(LocalStorage(tmp_path / "registry"), "demo")
    return Registry(S3Storage(request.getfixturevalue("bucket"), "registry"), "demo")
