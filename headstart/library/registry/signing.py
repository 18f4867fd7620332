"""Optional signing of manifests and alias entries: HMAC-SHA256 over their canonical JSON, the key from an
environment variable named in params (``registry.signing_key_env``), never from a file or the registry."""

from __future__ import annotations

import hashlib
import hmac
import json

SIGNATURE = "signature"


def _canonical(entry: dict) -> bytes:
    return json.dumps({k: v for k, v in entry.items() if k != SIGNATURE}, sort_keys=True).encode()


def sign(entry: dict, key: bytes) -> str:
    """The signature of ``entry`` (its own ``signature`` field excluded)."""
    return hmac.new(key, _canonical(entry), hashlib.sha256).hexdigest()


def signed_by(entry: dict, key: bytes) -> bool:
    """Whether ``entry`` carries a signature made with ``key`` (an unsigned entry is not)."""
    carried = entry.get(SIGNATURE)
    return isinstance(carried, str) and hmac.compare_digest(carried, sign(entry, key))
