"""What a registered version holds, taken from a finished run folder, and registering it."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from headstart.ground.errors import DataError
from headstart.ground.run_folder import DECISION, LINEAGE, METRICS, RunFolder
from headstart.library.models.model_config import CONFIG_FILE
from headstart.library.registry.registry import VERSION_ID, Registry, new_version_id, version_created_at
from headstart.library.storage.backends import ObjectExists

log = logging.getLogger(__name__)


def version_files(run: RunFolder) -> dict[str, bytes]:
    """The model folder's files plus the run's metrics, decision, model card, confusion table and lineage."""
    if not (run.model / CONFIG_FILE).is_file() or not run.decision.is_file():
        raise DataError(f"{run.root}: not a finished run (needs model/ and {DECISION}); run the pipeline first")
    files = {p.name: p.read_bytes() for p in sorted(run.model.iterdir()) if p.is_file()}
    files.update({name: path.read_bytes() for name, path in run.version_files().items()})
    lineage = json.loads(files[CONFIG_FILE])["lineage"]
    files[LINEAGE] = json.dumps(lineage, indent=2).encode()
    return files


def planned_version(run: RunFolder, resume_key: str | None = None) -> str | None:
    """The version id an earlier attempt chose for this run folder before uploading (with ``resume_key``: only
    when that attempt recorded the same key)."""
    try:
        intent = json.loads(run.registering.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(intent, dict) or (resume_key is not None and intent.get("resume_key") != resume_key):
        return None
    version = intent.get("version")
    return version if isinstance(version, str) and VERSION_ID.match(version) else None


def register_run(registry: Registry, run: RunFolder, resume_key: str | None = None, grace_hours: float = 24.0) -> str:
    """Register a finished run (every challenger is registered, PASS or FAIL); returns the version id.

    The id is chosen and written to the run folder (with ``resume_key``) before the upload starts, so a retry
    completes that version (files already uploaded count as written) instead of leaving it half-made beside
    a second one. When the folder's files changed since that attempt, or the id is older than half of
    ``registry.incomplete_grace_hours`` (``registry gc`` may be removing its upload; the retention policy would
    judge it by its old time), a new version is registered.
    """
    files = version_files(run)
    metrics = json.loads(files[METRICS])
    decision = json.loads(files[DECISION])
    lineage = json.loads(files[LINEAGE])
    summary = {
        "dataset": lineage.get("dataset"),
        "data_md5": lineage.get("data_md5"),
        "metrics": {k: metrics[k] for k in ("accuracy", "macro_f1")},
        "decision": decision["verdict"],
        "flow_run_id": lineage.get("flow_run_id"),
    }
    version = planned_version(run, resume_key)
    if version is not None and datetime.now(UTC) - version_created_at(version) > timedelta(hours=grace_hours / 2):
        log.warning(
            "%s/%s was begun too long ago to complete safely; registering a new version", registry.model, version
        )
        version = None
    if version is not None:
        try:
            return _registered(registry, registry.register(files, summary, version), decision)
        except ObjectExists:  # that attempt uploaded other bytes: its files were remade since
            log.warning("%s/%s holds other files than %s now: a new version", registry.model, version, run.root)
    version = new_version_id()
    intent = run.registering.with_name(run.registering.name + ".partial")  # replaced whole: never half an intent
    intent.write_text(json.dumps({"version": version, "resume_key": resume_key}))
    intent.replace(run.registering)
    return _registered(registry, registry.register(files, summary, version), decision)


def _registered(registry: Registry, version: str, decision: dict) -> str:
    log.info("registered %s/%s (%s)", registry.model, version, decision["verdict"])
    return version
