"""``model.weights: hub``: a timm backbone's pretrained weights from the Hugging Face hub, or the mirror that
``HF_ENDPOINT`` names, through huggingface_hub's own download and cache; ``HF_HUB_OFFLINE=1`` reads the cache
alone. These variables (and ``HF_HUB_CACHE``/``HF_HOME``) are read at each call, not at import as huggingface_hub
reads them, so a long-running server follows its environment.

The file is always the repository's ``model.safetensors`` (never a pickle), loaded by the checked loader, and
the weights are known by repository and commit: huggingface_hub keeps a download under a folder named by the
commit the endpoint answered with, so a file changed at the endpoint arrives under its new commit and is
recorded so (and its sha256 beside it, for a mirror that changes a file under the same commit)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from headstart.ground.errors import WeightsError

DEFAULT_ENDPOINT = "https://huggingface.co"
HUB_FILE = "model.safetensors"
SHA256 = re.compile(r"[0-9a-f]{64}")
CONNECT_SECONDS = 3.0  # an unreachable endpoint is named within seconds, not after a stack's retries


@dataclass(frozen=True)
class HubWeights:
    """A downloaded (or cached) weights file and where it came from."""

    repo_id: str
    revision: str  # the commit
    path: Path
    endpoint: str

    def record(self, sha256: str) -> dict[str, str]:
        """What the lineage keeps: the repository and commit to fetch again, and the bytes' digest (a mirror that
        changes a file under the same commit is caught by it)."""
        return {
            "source": "hub", "repo_id": self.repo_id, "revision": self.revision, "endpoint": self.endpoint,
            "file": HUB_FILE, "sha256": sha256,
        }  # fmt: skip


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` (read at each call, as huggingface_hub reads it only at import), else the public hub."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_cache() -> str | None:
    """``HF_HUB_CACHE``, else ``HF_HOME``/hub, read at each call; None: huggingface_hub's default."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return cache
    return os.path.join(home, "hub") if (home := os.environ.get("HF_HOME")) else None


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for the cache alone."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cached_revision(repo: str) -> str | None:
    """The commit of the copy of ``repo``'s weights in the Hugging Face cache (its ``main``), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, HUB_FILE, cache_dir=hub_cache())
    return Path(found).parent.name if isinstance(found, str) else None


def endpoint_reachable(endpoint: str, timeout: float = CONNECT_SECONDS) -> bool:
    """One TCP connect to the endpoint's host and port: offline answers in seconds."""
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_repo(architecture: str) -> str:
    """The hub repository timm names for ``architecture``'s default pretrained weights."""
    import timm

    try:
        repo = timm.models.get_pretrained_cfg(architecture).hf_hub_id
    except (AttributeError, RuntimeError):
        repo = None
    if not repo:
        raise WeightsError(f"model.weights=hub: timm names no hub weights for {architecture}; use file:PATH or s3://")
    return repo


def fetch_hub_weights(architecture: str) -> tuple[HubWeights, bytes]:
    """``architecture``'s ``model.safetensors`` from the endpoint (or the cache under ``HF_HUB_OFFLINE``) and its
    bytes, checked against the sha256 the hub gives for it (the ETag online; offline, the name huggingface_hub
    filed the cached copy under): a copy that does not match is fetched again online and refused offline. A
    clear error naming the model, the repository and the endpoint when neither has it."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, endpoint, offline = hub_repo(architecture), hub_endpoint(), hub_offline()
    where = f"{architecture}'s weights ({repo}/{HUB_FILE})"
    if not offline and not endpoint_reachable(endpoint):
        raise WeightsError(
            f"model.weights=hub: {endpoint} is unreachable from here, so {where} cannot be fetched; set "
            f"HF_HUB_OFFLINE=1 to use a copy already in the cache, or model.weights to file:PATH or s3://"
        )
    try:
        fetched, data, expected = _download(repo, endpoint, offline)
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            if offline:
                raise WeightsError(f"model.weights=hub: the cached copy of {where} does not match sha256 {expected}")
            # the cache holds other bytes under this commit (a mirror changed the file, or a copy went bad):
            # drop that revision from the cache (huggingface_hub keeps a cached copy without comparing it) and
            # fetch the endpoint's
            _forget_revision(fetched.revision)
            fetched, data, expected = _download(repo, endpoint, offline)
            if hashlib.sha256(data).hexdigest() != expected:
                raise WeightsError(f"model.weights=hub: {where} from {endpoint} does not match its sha256 {expected}")
    except LocalEntryNotFoundError:
        raise WeightsError(
            f"model.weights=hub with HF_HUB_OFFLINE set: {where} is not in the cache; fetch it once online"
        ) from None
    except WeightsError:
        raise
    except Exception as exc:  # HTTP errors, and the client's own transport errors (timeouts), which share no base
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, HfHubHTTPError) else str(exc)
        raise WeightsError(f"model.weights=hub: {where} could not be fetched from {endpoint}: {reason}") from None
    return fetched, data


def _forget_revision(revision: str) -> None:
    """Remove ``revision``'s snapshot (and the blobs only it used) from the cache, with huggingface_hub's own
    cache API."""
    from huggingface_hub import constants, scan_cache_dir

    scan_cache_dir(hub_cache() or constants.HF_HUB_CACHE).delete_revisions(revision).execute()


def _download(repo: str, endpoint: str, offline: bool) -> tuple[HubWeights, bytes, str | None]:
    """One download of ``main`` through huggingface_hub (which also records the branch for offline use), the
    bytes, and the sha256 they should have (None where the hub gives none: a non-LFS ETag)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    expected = None
    if not offline:  # the ETag the endpoint gives now (huggingface_hub keeps a cached copy without comparing it)
        meta = get_hf_file_metadata(hf_hub_url(repo, HUB_FILE, endpoint=endpoint), timeout=CONNECT_SECONDS)
        expected = meta.etag
    path = Path(hf_hub_download(
        repo, HUB_FILE, endpoint=endpoint, local_files_only=offline,
        etag_timeout=CONNECT_SECONDS, cache_dir=hub_cache(), library_name="headstart",
    ))  # fmt: skip
    if offline:
        expected = path.resolve().name  # the cache files each blob under its ETag
    expected = expected if expected and SHA256.fullmatch(expected) else None
    # huggingface_hub keeps each file under snapshots/<commit>/: the commit this copy came from
    return HubWeights(repo, path.parent.name, path, endpoint), path.read_bytes(), expected
