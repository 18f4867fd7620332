"""``headstart reproduce``: rebuild a registered version from its record alone and say whether it came out the same.

From the registry: the version's lineage (data md5s, params as given, the fingerprint of the code that built it,
the training environment), its weights' digests and its test metrics. From the DVC remote: exactly those data
versions, checked out into a scratch folder with its own DVC repository and feature store. Then the steps that
build a model (``tasks.pipeline.REBUILT_STEPS``) run there on the recorded params, with the recorded thread count,
and the result is compared (``headstart.library.evaluation.reproduction``). The outcome goes to
``reproduction.json`` in the scratch folder and, create-only, to the registry beside the version. The champion
alias and the workspace's data and params are never read for the rebuild nor written.
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
from headstart.ground.params import params_from_dict
from headstart.ground.run_folder import LINEAGE, METRICS, RunFolder
from headstart.library.evaluation.reproduction import compare_rebuild, environment_differences
from headstart.library.lineage import DVC_DIR_MD5
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
RESERVED = frozenset({".dvc", ".dvcignore", "run", "feature-store", "params.yaml", REPRODUCTION})  # the rebuild's own
# What a lineage record needs to be replayed, and what each entry is (versions registered before this existed
# lack some: they are named, never guessed).
NEEDED = {
    "data_md5": "the training data's DVC version",
    "params": "the params as given",
    "rebuild_code_sha256": "the fingerprint of the code that built it",
    "environment": "the device, precision, thread count and world size it trained under",
}


class NotReproducible(HeadstartError):
    """The record cannot be replayed as asked (incomplete or malformed lineage, other code without
    --allow-code-change)."""


@dataclass(frozen=True)
class Record:
    """A registered version as ``reproduce`` reads it (every file verified against the manifest)."""

    version: str
    lineage: dict
    metrics: dict
    model_files: dict[str, str]  # name → sha256: weights, classifier, config without lineage


def read_record(registry: Registry, ref: str) -> Record:
    """The version ``ref`` names (an id or ``champion``) with what a rebuild is compared against; a file that is
    not the JSON object it should be is refused, naming it."""
    version = registry.resolve(ref)
    manifest, _ = registry.verified_manifest(version)
    read = {name: _json_object(registry, version, name) for name in (LINEAGE, METRICS, CONFIG_FILE)}
    files = {name: manifest["files"][name] for name in MODEL_FILES if name in manifest["files"]}
    files[CONFIG_WITHOUT_LINEAGE] = config_digest(read[CONFIG_FILE])
    return Record(version, read[LINEAGE], read[METRICS], files)


def _json_object(registry: Registry, version: str, name: str) -> dict:
    data = registry.read_file(version, name)  # verified against the manifest
    try:
        value = json.loads(data) if data is not None else {}
    except ValueError as exc:
        raise NotReproducible(f"{registry.model}/{version}/{name}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise NotReproducible(f"{registry.model}/{version}/{name}: not a JSON object")
    return value


def config_digest(config: dict) -> str:
    """sha256 of a model config without its lineage (which names the run, not the model)."""
    kept = {k: v for k, v in config.items() if k != "lineage"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def model_digests(model_dir: Path) -> dict[str, str]:
    """What a model folder is compared by: its weights' and classifier's sha256 and its config's digest."""
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model_dir.iterdir() if p.name in MODEL_FILES}
    return {**files, CONFIG_WITHOUT_LINEAGE: config_digest(json.loads((model_dir / CONFIG_FILE).read_text()))}


def missing_lineage(record: Record) -> list[str]:
    """What the record lacks for a rebuild, in words (empty: it can be replayed)."""
    lineage = record.lineage
    missing = [f"{key} ({what})" for key, what in NEEDED.items() if not lineage.get(key)]
    params = lineage.get("params")
    data = params.get("data") if isinstance(params, dict) else None
    if params and not isinstance(data, dict):
        missing.append("params.data (the params recorded are not a params mapping)")
    elif data and data.get("test_dir") and not lineage.get("test_data_md5"):
        missing.append("test_data_md5 (the fixed test set's DVC version: it was not tracked by DVC)")
    if lineage.get("environment") and not isinstance(lineage["environment"], dict):
        missing.append("environment as a mapping")
    for key in ("data_md5", "test_data_md5"):
        md5 = lineage.get(key)
        if md5 is not None and not (isinstance(md5, str) and DVC_DIR_MD5.fullmatch(md5)):
            missing.append(f"{key} as a DVC directory md5 (it records {str(md5)[:80]!r})")
    return missing


def data_folders(record: Record) -> dict[str, str]:
    """Recorded data folder (workspace-relative) → the DVC md5 to check out there. Only plain relative folders that
    neither hold the other nor take a name the rebuild uses itself: the record decides where data is written."""
    data = record.lineage["params"]["data"]
    folders = {data.get("dir"): record.lineage["data_md5"]}
    if data.get("test_dir"):
        folders[data["test_dir"]] = record.lineage["test_data_md5"]
    for folder in folders:
        parts = Path(folder).parts if isinstance(folder, str) else ()
        if not parts or Path(folder).is_absolute() or {".", ".."} & set(parts) or parts[0] in RESERVED:
            raise NotReproducible(
                f"{record.version}: the recorded data folder {folder!r} is not a plain folder inside a workspace "
                f"(relative, no '.' or '..', not one of {sorted(RESERVED)})"
            )
    overlap = any(a != b and Path(a).is_relative_to(b) for a in folders for b in folders)
    if overlap or len(folders) < 1 + bool(data.get("test_dir")):
        raise NotReproducible(f"{record.version}: the recorded data.dir and data.test_dir overlap: {list(folders)}")
    return folders


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


def rebuild_params(record: Record, threads: int | None, workspace: Path) -> dict:
    """The recorded params as the scratch folder runs them: a feature store of its own (every feature extracted
    again), nothing announced, the recorded thread count unless ``threads`` asks for another, and ``auto``'s
    recorded choice (scenario and input size) instead of choosing again on this machine's device. Checked by
    the params model before anything is fetched (a record from other code may not be valid params here)."""
    params = json.loads(json.dumps(record.lineage["params"]))  # a copy
    train, recorded = params.setdefault("train", {}), record.lineage["environment"]
    if isinstance(choice := record.lineage.get("scenario_choice"), dict) and "scenario" in choice:
        train["scenario"] = choice["scenario"]  # a CUDA model's recipe is rebuilt, not the CPU's
        params.setdefault("model", {})["input_size"] = choice.get("input_size")
    train["feature_cache"] = "feature-store"
    params.setdefault("notify", {})["webhook_url"] = None  # (the URL was never recorded)
    train["threads"] = threads or recorded.get("threads") or train.get("threads")
    weights = (params.get("model") or {}).get("weights")
    if isinstance(weights, str) and weights.startswith("file:") and not Path(weights[5:]).is_absolute():
        params["model"]["weights"] = f"file:{(workspace / weights[5:]).resolve()}"  # the workspace's own file
    try:
        params_from_dict(params, f"{record.version}'s recorded params")
    except HeadstartError as exc:
        raise NotReproducible(f"{record.version}: its recorded params are not valid here: {exc}") from None
    return params


def reproduce(
    registry: Registry,
    ref: str,
    scratch: Path,
    remote: str,
    allow_code_change: bool = False,
    tolerance: float = 0.02,
    threads: int | None = None,
) -> dict:
    """Rebuild version ``ref`` in ``scratch`` (new or empty) from its record and the DVC ``remote``, compare,
    record the outcome in the registry and ``scratch/reproduction.json``; returns the outcome (its ``verdict``
    says whether it was reproduced). ``threads``: train with this many torch threads instead of the recorded
    count (another environment: compared within ``tolerance``)."""
    workspace, scratch = Path.cwd(), scratch.resolve()
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
    folders, params = data_folders(record), rebuild_params(record, threads, workspace)
    rebuilt = rebuild(scratch, folders, params, remote)
    differences = environment_differences(record.lineage, rebuilt["lineage"])
    if code is not None:
        differences["code"] = code
    outcome = {
        "version": record.version,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        **compare_rebuild(record.model_files, rebuilt["files"], record.metrics, rebuilt["metrics"], differences,
                          tolerance),
        "data": folders,
        "recorded_environment": record.lineage.get("environment"),
        "rebuilt_environment": rebuilt["lineage"].get("environment"),
    }  # fmt: skip
    (scratch / REPRODUCTION).write_text(json.dumps({**outcome, "scratch": str(scratch)}, indent=2))
    key = record_reproduction(registry, record.version, outcome)  # no local path of this machine in the registry
    return {**outcome, "scratch": str(scratch), "registry_record": key}


def rebuild(scratch: Path, folders: dict[str, str], params: dict, remote: str) -> dict:
    """Check the data versions out into ``scratch`` and run the rebuilt steps there on ``params``. Returns the
    rebuilt model's lineage, digests and metrics."""
    from headstart.library.data.versioning import checkout_versions

    try:
        scratch.mkdir(parents=True, exist_ok=True)
        if any(scratch.iterdir()):
            raise DataError(
                f"{scratch}: not empty; reproduce rebuilds in a folder of its own: "
                "`headstart reproduce VERSION --out NEW_FOLDER`"
            )
    except (NotADirectoryError, FileExistsError):
        raise DataError(f"{scratch}: not a folder; `headstart reproduce VERSION --out NEW_FOLDER`") from None
    checkout_versions(scratch, folders, remote)
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    import torch

    torch.set_num_threads(params["train"]["threads"])  # the recorded count for every step, not only training
    with contextlib.chdir(scratch):  # the recorded params name workspace-relative folders
        ctx = StepContext(params_from_dict(params), RunFolder(Path("run")), steps_by_name(), workspace=scratch)
        for name in REBUILT_STEPS:
            step = ctx.steps[name]
            log.info("reproduce: %s", name)
            ctx.results[name] = step.run(ctx)
            if step.check is not None:
                step.check(ctx, ctx.results[name])
    model = RunFolder(scratch / "run").model
    return {
        "lineage": json.loads((model / CONFIG_FILE).read_text())["lineage"],
        "files": model_digests(model),
        "metrics": json.loads((scratch / "run" / METRICS).read_text()),
    }
