"""``headstart reproduce``: rebuild a registered version from its record alone and say whether it came out the same.

From the registry: the version's lineage (data md5s, params as given, the fingerprint of the code that built it,
the training environment), its weights' digests and its test metrics. From the DVC remote: exactly those data
versions, checked out into a scratch folder with its own DVC repository and feature store. Then the steps that
build a model (``tasks.pipeline.REBUILT_STEPS``) run there on the recorded params, and the result is compared
(``headstart.library.evaluation.reproduction``). The outcome goes to ``reproduction.json`` in the scratch folder
and, create-only, to the registry beside the version. The champion alias, the workspace's data and params are
never read for the rebuild nor written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from headstart.ground.errors import DataError, HeadstartError
from headstart.ground.params import load_params
from headstart.ground.paths import inside
from headstart.ground.run_folder import LINEAGE, METRICS, RunFolder
from headstart.library.evaluation.reproduction import compare_rebuild, environment_differences
from headstart.library.models.classical import CLASSIFIER_FILE
from headstart.library.models.model_config import CONFIG_FILE, WEIGHTS_FILE
from headstart.library.registry.registry import Registry
from headstart.library.registry.reproductions import record_reproduction
from tasks.pipeline import REBUILT_STEPS, steps_by_name
from tasks.step import StepContext, code_fingerprint

log = logging.getLogger(__name__)
REPRODUCTION = "reproduction.json"
CONFIG_WITHOUT_LINEAGE = "config.json (lineage left out)"
MODEL_FILES = (WEIGHTS_FILE, CLASSIFIER_FILE)
# What a lineage record needs to be replayed, and what each entry is (versions registered before this existed
# lack some: they are named, never guessed).
NEEDED = {
    "data_md5": "the training data's DVC version",
    "params": "the params as given",
    "rebuild_code_sha256": "the fingerprint of the code that built it",
    "environment": "the device, precision, thread count and world size it trained under",
}


class NotReproducible(HeadstartError):
    """The record cannot be replayed as asked (incomplete lineage, other code without --allow-code-change)."""


@dataclass(frozen=True)
class Record:
    """A registered version as ``reproduce`` reads it (every file verified against the manifest)."""

    version: str
    lineage: dict
    metrics: dict
    model_files: dict[str, str]  # name → sha256: weights, classifier, config without lineage


def read_record(registry: Registry, ref: str) -> Record:
    """The version ``ref`` names (an id or ``champion``) with what a rebuild is compared against."""
    version = registry.resolve(ref)
    manifest, _ = registry.verified_manifest(version)
    lineage = json.loads(registry.read_file(version, LINEAGE) or b"{}")
    metrics = json.loads(registry.read_file(version, METRICS) or b"{}")
    config = json.loads(registry.read_file(version, CONFIG_FILE) or b"{}")
    files = {name: manifest["files"][name] for name in MODEL_FILES if name in manifest["files"]}
    files[CONFIG_WITHOUT_LINEAGE] = config_digest(config)
    return Record(version, lineage, metrics, files)


def config_digest(config: dict) -> str:
    """sha256 of a model config without its lineage (which names the run, not the model)."""
    return hashlib.sha256(
        json.dumps({k: v for k, v in config.items() if k != "lineage"}, sort_keys=True).encode()
    ).hexdigest()


def missing_lineage(record: Record) -> list[str]:
    """What the record lacks for a rebuild, in words (empty: it can be replayed)."""
    lineage = record.lineage
    missing = [f"{key} ({what})" for key, what in NEEDED.items() if not lineage.get(key)]
    params = lineage.get("params") or {}
    if (params.get("data") or {}).get("test_dir") and not lineage.get("test_data_md5"):
        missing.append("test_data_md5 (the fixed test set's DVC version: it was not tracked by DVC)")
    return missing


def code_difference(record: Record) -> dict | None:
    """How the installed code differs from the code that built the version (None: it is the same)."""
    steps = steps_by_name()
    installed = code_fingerprint([steps[name] for name in REBUILT_STEPS])
    recorded = record.lineage.get("rebuild_code_sha256")
    if installed == recorded:
        return None
    from headstart.library.lineage import code_commit, package_versions

    return {
        "recorded": {"fingerprint": recorded, "commit": record.lineage.get("code_commit"),
                     "headstart": record.lineage.get("headstart_version")},
        "installed": {"fingerprint": installed, "commit": code_commit(), "headstart": package_versions()["headstart"]},
    }  # fmt: skip


def reproduce(
    registry: Registry,
    ref: str,
    scratch: Path,
    remote: str,
    allow_code_change: bool = False,
    tolerance: float = 0.02,
    threads: int | None = None,
) -> dict:
    """Rebuild version ``ref`` in ``scratch`` from its record and the DVC ``remote``, compare, record the outcome
    in the registry and ``scratch/reproduction.json``; returns the outcome (its ``verdict`` says whether it was
    reproduced). ``threads``: train with this many torch threads instead of the recorded setting (then another
    environment, compared within ``tolerance``)."""
    record = read_record(registry, ref)
    if missing := missing_lineage(record):
        raise NotReproducible(
            f"{registry.model}/{record.version} cannot be rebuilt from its record: its lineage lacks "
            f"{'; '.join(missing)} (registered before Headstart recorded them). Retrain it to get a version that can"
        )
    code = code_difference(record)
    if code is not None and not allow_code_change:
        was, now = code["recorded"], code["installed"]
        raise NotReproducible(
            f"{registry.model}/{record.version} was built by other code: fingerprint {str(was['fingerprint'])[:12]} "
            f"(commit {was['commit']}, headstart {was['headstart']}) vs installed {now['fingerprint'][:12]} "
            f"(commit {now['commit']}, headstart {now['headstart']}). Check out that commit, or pass "
            "--allow-code-change to rebuild with this code (compared within the tolerance, never called identical)"
        )
    rebuilt = rebuild(record, scratch, remote, threads)
    differences = environment_differences(record.lineage, rebuilt["lineage"])
    if code is not None:
        differences["code"] = code
    outcome = {
        "version": record.version,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        **compare_rebuild(record.model_files, rebuilt["files"], record.metrics, rebuilt["metrics"], differences,
                          tolerance),
        "data": rebuilt["data"],
        "recorded_environment": record.lineage.get("environment"),
        "rebuilt_environment": rebuilt["lineage"].get("environment"),
        "scratch": str(scratch.resolve()),
    }  # fmt: skip
    (scratch / REPRODUCTION).write_text(json.dumps(outcome, indent=2))
    outcome["registry_record"] = record_reproduction(registry, record.version, outcome)
    return outcome


def rebuild(record: Record, scratch: Path, remote: str, threads: int | None) -> dict:
    """The recorded data versions checked out into ``scratch`` and the rebuilt steps run there on the recorded
    params (with a feature store of its own: every feature is extracted again). Returns the rebuilt model's
    lineage, file digests and metrics, and the data versions used."""
    from headstart.library.data.versioning import checkout_versions

    params = record.lineage["params"]
    folders = {params["data"]["dir"]: record.lineage["data_md5"]}
    if params["data"].get("test_dir"):
        folders[params["data"]["test_dir"]] = record.lineage["test_data_md5"]
    for what, folder in zip(("data.dir", "data.test_dir"), folders, strict=False):
        if Path(folder).is_absolute():
            raise DataError(f"{what} {folder!r} is recorded as an absolute path; only workspace folders can be rebuilt")
        inside(scratch, folder, what)
    if scratch.exists() and any(scratch.iterdir()):
        raise DataError(f"{scratch}: not empty; reproduce rebuilds in a folder of its own (give a new --out)")
    checkout_versions(scratch, folders, remote)
    params = json.loads(json.dumps(params))  # a copy, adjusted for the scratch folder only:
    params["train"]["feature_cache"] = "feature-store"  # every feature extracted again, not read from a cache
    params["notify"]["webhook_url"] = None  # nothing is announced (and the URL was never recorded)
    if threads is not None:
        params["train"]["threads"] = threads
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with contextlib.chdir(scratch):  # the recorded params name workspace-relative folders
        ctx = StepContext(
            load_params("params.yaml"), RunFolder(Path("run")), steps_by_name(), workspace=scratch.resolve()
        )
        for name in REBUILT_STEPS:
            step = ctx.steps[name]
            log.info("reproduce: %s", name)
            ctx.results[name] = step.run(ctx)
            if step.check is not None:
                step.check(ctx, ctx.results[name])
    run = RunFolder(scratch / "run")
    config = json.loads((run.model / CONFIG_FILE).read_text())
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.model.iterdir() if p.name in MODEL_FILES}
    files[CONFIG_WITHOUT_LINEAGE] = config_digest(config)
    return {"lineage": config["lineage"], "files": files, "metrics": json.loads(run.metrics.read_text()),
            "data": folders}  # fmt: skip
