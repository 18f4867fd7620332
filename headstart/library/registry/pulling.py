"""Pulling a version into a local folder: verified, atomic, never destructive.

- Every file is checked against the manifest (and the manifest against the one recorded at promotion) before
  anything becomes visible; names are plain file names only, so nothing is written outside the folder.
- Each pull stages into its own temporary folder beside ``dest`` and publishes it with one rename, so two
  processes pulling the same version at once both end with one complete folder.
- An existing ``dest`` is never deleted: it must be empty, or an earlier pull of the same version (its marker
  file says so), which is then re-verified instead of downloaded again (sizes and the manifest digest every time,
  every sha256 with ``full_check``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from headstart.library.registry.errors import RegistryError
from headstart.library.storage.backends import current_umask, fsync_dir


class VerifiedVersions(Protocol):
    """What pulling needs of a registry: its model name and a version's verified manifest and files."""

    model: str

    def verified_manifest(self, version: str) -> tuple[dict, str]:
        """The manifest, verified, and its sha256."""
        ...

    def fetch(self, version: str) -> tuple[dict, str, dict[str, bytes]]:
        """The verified manifest, its sha256 and every file's bytes, each checked against it."""
        ...


PULL_MARKER = ".headstart-pull.json"  # hidden: the model folder's own files are the manifest's


def _marker(dest: Path) -> dict | None:
    """The marker an earlier pull left, or None (missing, unreadable or not one)."""
    try:
        marker = json.loads((dest / PULL_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("sizes"), dict) else None


def _is_pull_of(dest: Path, registry: VerifiedVersions, version: str) -> bool:
    marker = _marker(dest)
    return marker is not None and (marker.get("model"), marker.get("version")) == (registry.model, version)


def _reverify(registry: VerifiedVersions, version: str, dest: Path, full_check: bool) -> None:
    """An earlier pull of ``version`` at ``dest`` still matches the registry's manifest, file by file."""
    manifest, digest = registry.verified_manifest(version)
    marker = _marker(dest) or {}
    present = sorted(p.name for p in dest.iterdir() if p.name != PULL_MARKER)
    problem = None
    if marker.get("manifest_sha256") != digest:
        problem = "its manifest changed since it was pulled"
    elif present != sorted(manifest["files"]) or sorted(marker["sizes"]) != present:
        problem = f"it holds {present}, the manifest names {sorted(manifest['files'])}"
    elif not all((dest / n).is_file() and not (dest / n).is_symlink() for n in present):
        problem = "it holds something other than plain files"
    elif any((dest / n).stat().st_size != size for n, size in marker["sizes"].items()):
        problem = "a file's size changed since it was pulled"
    elif full_check:
        changed = [n for n, h in manifest["files"].items() if hashlib.sha256((dest / n).read_bytes()).hexdigest() != h]
        problem = f"{changed} no longer match their sha256" if changed else None
    if problem:
        raise RegistryError(
            f"{dest}: an earlier pull of {registry.model}/{version}, but {problem}; remove the folder to pull again"
        )


def pull_version(registry: VerifiedVersions, version: str, dest: Path, full_check: bool = True) -> Path:
    """``dest`` holding exactly the verified files of ``version`` (pulled now, or re-verified from before)."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        if not _is_pull_of(dest, registry, version):
            raise RegistryError(
                f"{dest}: exists and is not an earlier pull of {registry.model}/{version}; nothing was written "
                "there — choose an empty or new folder"
            )
        _reverify(registry, version, dest, full_check)
        return dest
    _, digest, files = registry.fetch(version)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.partial-"))
    try:
        for name, data in files.items():
            _write_durably(staging / name, data)
        marker = {"model": registry.model, "version": version, "manifest_sha256": digest}
        marker["sizes"] = {name: len(data) for name, data in files.items()}
        _write_durably(staging / PULL_MARKER, json.dumps(marker).encode())
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700: readable per the umask, like any folder
        try:
            os.rename(staging, dest)  # atomic; replaces only an empty folder
        except OSError:
            if _is_pull_of(dest, registry, version):  # a concurrent pull of it landed first
                _reverify(registry, version, dest, full_check)
                return dest
            raise RegistryError(f"{dest}: appeared while pulling {registry.model}/{version}; left untouched") from None
        fsync_dir(dest.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
