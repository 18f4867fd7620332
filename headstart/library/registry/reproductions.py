"""Reproduction records: what ``headstart reproduce`` found when it rebuilt a registered version, kept beside the
version (never inside it: a version is closed by its manifest).

Layout under ``<model>/``: ``reproductions/<version>/<record id>.json``, each created once (If-None-Match) and,
when the registry signs, signed like a manifest. Readers take only well-formed records of that version (signed
with the key when there is one) and name the others in a warning; nothing here can change a version or the alias.
"""

from __future__ import annotations

import json
import logging

from headstart.library.registry.errors import RegistryError
from headstart.library.registry.registry import VERSION_ID, Registry, new_version_id
from headstart.library.registry.signing import SIGNATURE, sign, signed_by

log = logging.getLogger(__name__)
FOLDER = "reproductions"


def _prefix(registry: Registry, version: str) -> str:
    if not isinstance(version, str) or not VERSION_ID.match(version):
        raise RegistryError(f"{registry.model}: {version!r} is not a version id")
    return f"{registry.model}/{FOLDER}/{version}/"


def record_reproduction(registry: Registry, version: str, outcome: dict) -> str:
    """Store ``outcome`` as a new record of ``version`` (create-only, signed when the registry signs); returns its
    key. ``outcome`` must say ``at`` and ``verdict``; ``model`` and ``version`` are set here."""
    record = {**outcome, "model": registry.model, "version": version}
    record.pop(SIGNATURE, None)
    if registry.signing_key is not None:
        record[SIGNATURE] = sign(record, registry.signing_key)
    key = _prefix(registry, version) + f"{new_version_id()}.json"
    registry.storage.put(key, json.dumps(record, indent=2).encode(), create_only=True)
    return key


def reproductions(registry: Registry, version: str) -> list[dict]:
    """The trusted records of ``version``, oldest first. A record that is not JSON, names another model or
    version, lacks ``at``/``verdict`` or (in a signed registry) is unsigned or wrongly signed is skipped and
    named in a warning: a reader never shows what the writer would have refused."""
    prefix = _prefix(registry, version)
    trusted = []
    for key in sorted(registry.storage.list(prefix)):
        try:
            record = json.loads(registry.storage.get(key))
            if not isinstance(record, dict) or (record.get("model"), record.get("version")) != (
                registry.model,
                version,
            ):
                raise ValueError("it describes another model or version")
            check_shape(record)
            if registry.signing_key is not None and not signed_by(record, registry.signing_key):
                raise ValueError("unsigned or wrongly signed")
        except ValueError as exc:  # JSON errors are ValueErrors
            log.warning("%s: not a trusted reproduction record (%s); skipped", key, exc)
            continue
        trusted.append(record)
    return trusted


def check_shape(record: dict) -> None:
    """ValueError unless the fields readers show have the types ``headstart reproduce`` writes."""
    if not isinstance(record.get("at"), str) or not isinstance(record.get("verdict"), str):
        raise ValueError("no 'at' or 'verdict'")
    if record.get("mode") not in ("bitwise", "tolerance", None):
        raise ValueError(f"mode {record.get('mode')!r}")
    why = record.get("why_not_bitwise")
    if why is not None and not (isinstance(why, list) and all(isinstance(w, str) for w in why)):
        raise ValueError("why_not_bitwise is not a list of names")
    tolerance = record.get("tolerance")
    if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, int | float)):
        raise ValueError("tolerance is not a number")
    metrics = record.get("metrics", {})
    if not isinstance(metrics, dict) or not all(isinstance(m, dict) for m in metrics.values()):
        raise ValueError("metrics is not a mapping of metrics")
    deltas = [m.get("delta") for m in metrics.values()]
    if any(d is not None and (isinstance(d, bool) or not isinstance(d, int | float)) for d in deltas):
        raise ValueError("a metric's delta is not a number")


def latest_outcome(registry: Registry, version: str) -> str | None:
    """``reproduced on <date>: <verdict>`` for the newest trusted record of ``version``; None when there is none."""
    records = reproductions(registry, version)
    if not records:
        return None
    last = records[-1]
    return f"reproduced on {last['at'][:10]}: {last['verdict']}"
