"""Sweep trials on workers that share no file system with the coordinator (``--cluster tcp://``).

A worker needs the installed package, the DVC remote and the registry's bucket (credentials from its own
environment), nothing of the coordinator's disk. It checks out exactly the data version the sweep names (by DVC
md5, as ``headstart reproduce`` does) into its own working folder, reads the prepared data steps' files from
``<model>/runs/<run id>/prepared/`` in the registry's bucket, trains and scores the trial there, and writes the
trial's folder (model, curves, ``trial.json``; not its checkpoints) to ``<model>/runs/<run id>/<trial>/``. The
coordinator downloads the chosen trial's folder and judges it like any run. Only relative names and ``s3://``
addresses cross between machines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from headstart.ground.errors import ConfigError
from headstart.ground.params import Params
from headstart.ground.run_folder import CHECKPOINTS, TRIAL_RECORD
from headstart.library import lineage
from headstart.library.storage.backends import LocalStorage, Storage, open_storage
from headstart.library.storage.exchange import copy_objects
from tasks.sweep import PREPARED, Trial, prepare_trial, read_record, run_trial, write_record

log = logging.getLogger(__name__)

WORKER_FOLDER = "headstart-worker"  # in a worker's working directory: its data checkouts and trial folders
PREPARED_KEY = "prepared"
# What a trial records about its data and workspace comes from the coordinator (the worker has no git checkout
# and only the training data); the packages and the machine are the worker's own.
COORDINATOR_LINEAGE = ("workspace_commit", "dataset", "data_md5", "test_data_md5", "split")
_working_directory = threading.Lock()  # a trial reads its data by workspace-relative names: one chdir at a time


@dataclass(frozen=True)
class Exchange:
    """Where a sweep's coordinator and its workers meet: the registry's bucket (``uri``), the sweep's key prefix
    in it, the DVC remote and the data versions the trials train on (workspace-relative folder → DVC md5), and
    the coordinator's lineage of them."""

    uri: str
    model: str
    run_id: str
    dvc_remote: str
    data: dict[str, str]
    lineage: dict

    @property
    def run_key(self) -> str:
        """The sweep's prefix in the bucket."""
        return f"{self.model}/runs/{self.run_id}"

    def storage(self) -> Storage:
        """The registry's bucket, with this process's credentials."""
        return open_storage(self.uri)

    def trial_uri(self, trial: str) -> str:
        """Where a trial's folder lies, as every machine can name it."""
        return f"{self.uri}/{self.run_key}/{trial}"


def plan_exchange(params: Params, trials: list[Params], workspace: Path, sweep_root: Path) -> Exchange:
    """The exchange of a sweep run in ``sweep_root`` (its ``trials``' params), or a ConfigError naming what a cluster
    that shares no file system lacks: an S3 registry, an S3 DVC remote, training data tracked by DVC at a
    workspace-relative path, weights every machine can read (not a ``file:`` path of this one)."""
    from headstart.library.data.versioning import configured_remote, data_md5_of, find_repo_root

    if not params.registry.uri.startswith("s3://"):
        raise ConfigError(
            f"registry.uri {params.registry.uri!r}: a tcp:// cluster shares no file system with this machine; its "
            "workers hand their trials back through the registry's bucket: set registry.uri to s3://BUCKET/PREFIX"
        )
    if local := sorted({t.model.weights for t in [params, *trials] if t.model.weights.startswith("file:")}):
        raise ConfigError(
            f"model.weights {', '.join(local)}: a file of this machine, which the workers of a tcp:// cluster cannot "
            "read; put the weights in a bucket (s3://BUCKET/KEY) or use a package:NAME preset"
        )
    remote = configured_remote(find_repo_root(workspace))
    if not remote or not remote.startswith("s3://"):
        raise ConfigError(
            f"DVC remote {remote!r}: the workers of a tcp:// cluster check the data out from the DVC remote; make it "
            "a bucket they can reach: `headstart data remote s3://BUCKET/dvc`"
        )
    data_dir = Path(params.data.dir)
    md5 = None if data_dir.is_absolute() else data_md5_of(workspace / data_dir)
    if md5 is None:
        raise ConfigError(
            f"data.dir {params.data.dir}: not a workspace-relative folder tracked by DVC; the workers of a tcp:// "
            "cluster get the data by its DVC version: `headstart data import` tracks and pushes it"
        )
    record = lineage.collect(workspace, params, None)
    data = {data_dir.as_posix(): md5}
    # one prefix per sweep folder of this coordinator and what its trials depend on (data, split, params): a
    # sweep run again unchanged finds its scored trials, one run on other data or params never does
    where = json.dumps([socket.gethostname(), str(sweep_root.resolve()), data, params.digest()])
    run_id = f"{sweep_root.name}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"
    return Exchange(
        params.registry.uri, params.registry.model_name, run_id, remote, data,
        {key: record[key] for key in COORDINATOR_LINEAGE},
    )  # fmt: skip


def publish_prepared(exchange: Exchange, sweep_root: Path) -> list[str]:
    """The data steps' files (manifests, split, health) where the workers read them."""
    prepared = f"{exchange.run_key}/{PREPARED_KEY}"
    return copy_objects(LocalStorage(sweep_root), "", exchange.storage(), prepared, _among(PREPARED))


def run_remote_trial(
    params: Params, exchange: Exchange, trial: Trial, flow_run_id: str | None, threads: int | None
) -> dict:
    """On a worker: :func:`tasks.sweep.run_trial` in this machine's own folder on the data version checked out
    from the DVC remote, its folder then written to the bucket (``trial.json`` last: a trial whose record there
    holds its result is whole; each attempt is sent as it starts, so a trial rescheduled onto another machine
    keeps the history of the one that died). A trial the bucket already holds scored (a sweep run again) is
    returned, not retrained."""
    storage = exchange.storage()
    with _working_directory:  # read while no trial of this process has changed it
        home = Path.cwd().resolve() / WORKER_FOLDER
    sweep_root = home / "runs" / exchange.run_id
    trial_key = f"{exchange.run_key}/{trial.name}"
    workspace = _checkout(home, exchange)
    copy_objects(storage, f"{exchange.run_key}/{PREPARED_KEY}", LocalStorage(sweep_root), keep=_among(PREPARED))
    copy_objects(storage, trial_key, LocalStorage(sweep_root / trial.name))  # an earlier attempt's record, model
    params = params.model_copy(  # this machine's own feature store: nothing in a store is shared
        update={"train": params.train.model_copy(update={"feature_cache": None})}
    )

    def send_attempt(record: Path) -> None:  # every attempt's host and pid, whichever machine runs the next
        storage.put(f"{trial_key}/{TRIAL_RECORD}", record.read_bytes())

    with _working_directory, contextlib.chdir(workspace):
        row = run_trial(
            params, sweep_root, trial, flow_run_id, threads,
            lineage_from=exchange.lineage, location=exchange.trial_uri(trial.name), on_attempt=send_attempt,
        )  # fmt: skip
    trial_root = LocalStorage(sweep_root / trial.name)
    kept_here = _among((CHECKPOINTS, TRIAL_RECORD, *PREPARED))  # checkpoints, the record (sent last), the inputs
    copy_objects(trial_root, "", storage, trial_key, lambda name: not kept_here(name))
    storage.put(f"{trial_key}/{TRIAL_RECORD}", trial_root.get(TRIAL_RECORD))
    return row


def fetch_trial(exchange: Exchange, trial: str, sweep_root: Path) -> Path:
    """The chosen trial's folder from the bucket into this sweep's folder (with the prepared files beside, as a
    local trial has them): the steps after training run on it here."""
    target = sweep_root / trial
    copy_objects(exchange.storage(), f"{exchange.run_key}/{trial}", LocalStorage(target))
    prepare_trial(sweep_root, target)
    record = read_record(target / TRIAL_RECORD)
    record["result"]["run_dir"] = str(target)  # this machine's copy
    write_record(target / TRIAL_RECORD, record)
    return target


def _checkout(home: Path, exchange: Exchange) -> Path:
    """This worker's checkout of the sweep's data versions, made once (under a lock: trials of one machine wait
    for one checkout); a checkout a killed worker left unfinished is made again."""
    from filelock import FileLock

    from headstart.library.data.versioning import checkout_versions

    versions = json.dumps(exchange.data, sort_keys=True)
    folder = home / "data" / hashlib.sha256(versions.encode()).hexdigest()[:16]
    done = folder / ".checked-out"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            log.info("checking out %s from %s", versions, exchange.dvc_remote)
            checkout_versions(folder, exchange.data, exchange.dvc_remote)
            done.write_text(versions)
    return folder


def _among(names: tuple[str, ...]):
    """Whether a relative name lies in one of ``names`` (top-level files or folders)."""
    return lambda name: name.split("/")[0] in names
