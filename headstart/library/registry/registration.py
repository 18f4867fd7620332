"""What a registered version holds, taken from a finished run folder, and registering it."""

from __future__ import annotations

import json
import logging

from headstart.ground.errors import DataError
from headstart.ground.run_folder import DECISION, LINEAGE, METRICS, RunFolder
from headstart.library.models.saved_model import CONFIG_FILE
from headstart.library.registry.registry import Registry

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


def register_run(registry: Registry, run: RunFolder) -> str:
    """Register a finished run as a new version (every challenger is registered, PASS or FAIL)."""
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
    version = registry.register(files, summary)
    log.info("registered %s/%s (%s)", registry.model, version, decision["verdict"])
    return version
