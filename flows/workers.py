"""Workers on machines that share no file system with the workspace: the command each runs and the environment
it needs.

``headstart worker dask SCHEDULER`` (sweep trials) and ``headstart worker prefect`` (the ``gpu`` pool's
deployment runs; the Dockerfile's CMD) build their command lines here, and the README's "Scale out" table is
this module's :data:`WORKER_ENVIRONMENT` (a test keeps the two equal). A worker's working directory is its own:
trials check their data out into ``./headstart-worker`` and keep their feature store in the user cache.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from headstart.ground.errors import ConfigError
from tasks.remote_trial import WORKER_FOLDER

# variable -> what a worker uses it for; credentials may instead come from a profile or an instance role
WORKER_ENVIRONMENT = {
    "PREFECT_API_URL": "the Prefect server the sweep or the deployment reports to (required)",
    "AWS_ENDPOINT_URL": "the S3 endpoint of the registry's bucket and the DVC remote (omit on AWS itself)",
    "AWS_ACCESS_KEY_ID": "an access key for both buckets (or AWS_PROFILE, or an instance role)",
    "AWS_SECRET_ACCESS_KEY": "its secret (never logged; read by boto3 and DVC from the environment only)",
    "HEADSTART_GIT_REMOTE": "the workspace's git remote, for deployment runs (a clone per run; Prefect worker)",
    "HEADSTART_DVC_REMOTE": "the DVC remote a clone pulls its data from, s3://BUCKET/PREFIX (Prefect worker)",
    "HEADSTART_CACHE": "optional: the machine's cache (feature store, ONNX exports); default ~/.cache/headstart",
}
REQUIRED = ("PREFECT_API_URL",)
DASK_ENVIRONMENT = {
    # trials start processes of their own (DataLoader workers, torchrun ranks): daemonic workers may not
    "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
}


def missing_environment(environment: Mapping[str, str]) -> list[str]:
    """The required variables ``environment`` lacks."""
    return [name for name in REQUIRED if not environment.get(name)]


def dask_worker_command(scheduler: str, host: str = "127.0.0.1") -> list[str]:
    """One single-threaded Dask worker process (trials set their own torch threads) for ``scheduler``, serving on
    ``host`` (loopback unless told: a worker on another machine must be told its own address, else a scheduler
    elsewhere could not reach it — refused here instead of a worker that never gets a task)."""
    from urllib.parse import urlsplit

    loopback = ("127.0.0.1", "localhost", "::1")
    if host in loopback and urlsplit(scheduler).hostname not in loopback:
        raise ConfigError(
            f"scheduler {scheduler} is on another machine, which cannot reach a worker serving on {host}: give "
            "this machine's address on the cluster's network, `headstart worker dask SCHEDULER --host ADDRESS`"
        )
    return [
        sys.executable, "-m", "distributed.cli.dask_worker", scheduler,
        "--nthreads", "1", "--nworkers", "1", "--host", host, "--dashboard-address", f"{host}:0",
        "--local-directory", f"{WORKER_FOLDER}/dask",
    ]  # fmt: skip


def dask_worker_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """``environment`` with what a Dask worker running trials needs set."""
    return {**environment, **DASK_ENVIRONMENT}


def prefect_worker_command(pool: str = "gpu") -> list[str]:
    """A Prefect process worker polling ``pool``: each deployment run clones the workspace's git remote and pulls
    its data (the deployment's pull steps, prefect.yaml)."""
    return [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]


def workspace_for_run(workspace: str | None = None, git_remote: str | None = None) -> dict[str, str]:
    """The ``gpu`` deployment's pull step (prefect.yaml): make the folder a run executes in the working directory.

    With ``git_remote`` (``HEADSTART_GIT_REMOTE``, at deploy time or in the worker's environment: a worker that
    shares no file system with the workspace) a clone of it made by Prefect's own ``git_clone`` step in this run's
    folder, its datasets pulled from the DVC remote (``HEADSTART_DVC_REMOTE``: a clone holds no machine's remote
    configuration); else ``workspace``, the deploying machine's folder (a worker that sees it, as before). A clone
    is deleted with the run's folder, so its params must register into S3, or the model would go with it."""
    import os

    from prefect.deployments.steps import git_clone, set_working_directory

    if git_remote:
        from headstart.ground.params import load_params
        from headstart.library.data.versioning import REMOTE_ENV, configured_remote, pull

        clone = Path(git_clone(repository=git_remote, clone_directory_name="workspace")["directory"]).resolve()
        registry = load_params(clone / "params.yaml").registry.uri
        if not registry.startswith("s3://"):
            raise ConfigError(
                f"{git_remote}: params.yaml registers into {registry!r}, which is deleted with this run's clone; a "
                "worker that shares no file system registers into S3: set registry.uri to s3://BUCKET/PREFIX there"
            )
        if configured_remote(clone) is None and not os.environ.get(REMOTE_ENV):
            raise ConfigError(f"{REMOTE_ENV} not set: {WORKER_ENVIRONMENT[REMOTE_ENV]}")
        pull(clone)  # every dataset its .dvc files name, by md5
        return set_working_directory(str(clone))
    if workspace and Path(workspace).is_dir():
        return set_working_directory(workspace)
    raise ConfigError(
        f"the deployment's workspace {workspace or '(none)'} is not a folder on this machine: a worker that shares no "
        "file system with it needs HEADSTART_GIT_REMOTE (the workspace's git remote) in its environment"
    )
