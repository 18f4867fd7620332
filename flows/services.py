"""``headstart serve``: a Prefect server (unless one is configured), the work pools, the deployments from
prefect.yaml and the workers — and stopping all of it again."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from headstart.ground.errors import ToolError
from headstart.ground.params import Params

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOLS = ("local", "gpu")
AUTH_FILE = Path(".prefect") / "api-auth"  # in the workspace, 0600
AUTH_ENV = "PREFECT_API_AUTH_STRING"  # what Prefect clients (workers, the prefect CLI, headstart) send
API_URL_FILE = Path(".prefect") / "api-url"  # in the workspace, while its serve runs: where the API is


def api_auth_string(workspace: Path) -> str:
    """The auth string the Prefect API that serve starts requires: ``$PREFECT_API_AUTH_STRING`` when set, else
    generated once into ``<workspace>/.prefect/api-auth`` (mode 0600) and read from there afterwards."""
    if os.environ.get(AUTH_ENV):
        return os.environ[AUTH_ENV]
    path = workspace / AUTH_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_auth_file(path)
    with os.fdopen(fd, "w") as out:
        out.write(f"headstart:{secrets.token_urlsafe(32)}\n")
        out.flush()
        os.fsync(out.fileno())
    return _read_auth_file(path)


def workspace_auth_string(workspace: Path) -> str | None:
    """The auth string a workspace's serve generated, if any (None when there is no such file)."""
    path = workspace / AUTH_FILE
    return _read_auth_file(path) if path.is_file() else None


def _read_auth_file(path: Path) -> str:
    """The file's auth string; refused when others may read it, or when it is empty (an API without auth)."""
    if path.stat().st_mode & 0o077:
        raise ToolError(f"{path}: the API auth string is readable by others; chmod 600 it")
    auth = path.read_text().strip()
    if not auth:
        raise ToolError(f"{path}: empty; delete it and `headstart serve` generates a new auth string")
    return auth


def workspace_api_url(workspace: Path) -> str | None:
    """The API URL the workspace's running ``headstart serve`` recorded, if any (so that ``headstart watch`` in
    another shell reaches it without an export). Only an API on this machine is taken: a file planted in the
    workspace cannot send its runs and events elsewhere."""
    recorded = _recorded_url(workspace / API_URL_FILE)
    if not recorded or not is_loopback(recorded):
        return None
    try:  # a serve that was killed (-9, OOM, reboot) left its file: a dead API is no API
        with urllib.request.urlopen(f"{recorded.rstrip('/')}/health", timeout=1.0):
            return recorded
    except (OSError, ValueError):
        return None


def _recorded_url(path: Path) -> str | None:
    """What an api-url file says, alive or not."""
    try:
        return path.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def is_loopback(api_url: str) -> bool:
    """Whether the API is on this machine (the only place a workspace's own auth string is sent)."""
    from urllib.parse import urlparse

    return urlparse(api_url).hostname in ("127.0.0.1", "localhost", "::1")


@dataclass
class Services:
    """What serve started (only those are stopped) and where the API is."""

    api_url: str
    auth: str | None = None  # the API auth string (None: the API asks for none)
    processes: list[subprocess.Popen] = field(default_factory=list)
    automations: list[str] = field(default_factory=list)  # the notification automations created
    recorded_at: Path | None = None  # the workspace's api-url file this serve wrote (removed when it stops)

    def record_api_url(self, workspace: Path) -> None:
        """Write where the API is into the workspace, for headstart commands run there while serve runs."""
        path = workspace / API_URL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(self.api_url + "\n")
        os.replace(partial, path)
        self.recorded_at = path

    def client_env(self) -> dict[str, str]:
        """The variables a Prefect client of these services needs."""
        return {"PREFECT_API_URL": self.api_url, **({AUTH_ENV: self.auth} if self.auth else {})}

    @property
    def ui_url(self) -> str:
        """The Prefect UI's address."""
        return self.api_url.removesuffix("/api")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every started process group, then SIGKILL what is left after ``grace`` seconds (a worker may
        ignore SIGTERM while a run is in flight); the recorded API URL goes first (the API is going away)."""
        if self.recorded_at is not None and _recorded_url(self.recorded_at) == self.api_url:
            self.recorded_at.unlink(missing_ok=True)  # unless another serve has recorded its own since
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            # the leader is gone; its children (a worker's run, a server's workers) may still be exiting
            while _group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _group_alive(process.pid):
                with contextlib.suppress(ProcessLookupError):  # gone since the check
                    os.killpg(process.pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is left (signal 0 checks without sending)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_healthy(api_url: str, timeout: float = 90.0, process: subprocess.Popen | None = None) -> None:
    """Poll ``/health`` until the server answers; as soon as ``process`` (the server, when this process started
    it) has exited, say so instead of waiting out the timeout (a port taken meanwhile, a broken database)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if process is not None and process.poll() is not None:
                exited = f"the Prefect server for {api_url} exited ({process.returncode}) before answering"
                raise ToolError(exited) from None
            time.sleep(0.5)
    raise ToolError(f"the Prefect server at {api_url} did not become healthy within {timeout:.0f} s")


def start_server(
    port: int, home: Path, log: Path, extra_env: dict[str, str] | None = None, auth: str | None = None
) -> tuple[subprocess.Popen, str]:
    """``prefect server start`` on 127.0.0.1 with its own PREFECT_HOME (its database lives there); with ``auth``,
    every API call but the health check must carry it (the UI asks for it)."""
    home.mkdir(parents=True, exist_ok=True)
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": api_url,  # the UI in the browser otherwise calls the default port, 4200
        **({"PREFECT_SERVER_API_AUTH_STRING": auth} if auth else {}),
        **(extra_env or {}),
    }
    env.pop("PREFECT_API_URL", None)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_healthy(api_url, process=process)
    except ToolError as exc:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        raise ToolError(f"{exc}; its log: {log}") from None
    return process, api_url


def ensure_pools(pools: tuple[str, ...] = POOLS) -> None:
    """Create the process work pools that prefect.yaml names, where missing (``prefect deploy`` needs them)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        existing = {pool.name for pool in client.read_work_pools()}
        for name in pools:
            if name not in existing:
                with suppress(ObjectAlreadyExists):  # created meanwhile by another serve
                    client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def _workspace_env(api_url: str, workspace: Path, auth: str | None) -> dict[str, str]:
    """What prefect deploy and the workers need: the API (and its auth string), and the workspace runs execute
    in."""
    env = {**os.environ, "PREFECT_API_URL": api_url, "HEADSTART_WORKSPACE": str(workspace.resolve())}
    return {**env, AUTH_ENV: auth} if auth else env


def deploy(api_url: str, workspace: Path, names: tuple[str, ...] = (), auth: str | None = None) -> None:
    """Apply prefect.yaml (all its deployments, or those ``names``); runs will execute in ``workspace``."""
    from flows.notifications import model_tag
    from headstart.ground.params import load_params

    env = _workspace_env(api_url, workspace, auth)
    which = [arg for name in names for arg in ("--name", name)] or ["--all"]
    # the deployments' runs carry the workspace's model tag from their creation: its failure automation's match
    if (workspace / "params.yaml").is_file():  # prefect.yaml's tags name it: the CLI's --tag is ignored with --all
        env["HEADSTART_MODEL_TAG"] = model_tag(load_params(workspace / "params.yaml").registry.model_name)
    done = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", "deploy", *which, "--prefect-file", str(PROJECT_ROOT / "prefect.yaml")],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ToolError(f"prefect deploy failed:\n{(done.stdout + done.stderr)[-3000:]}")


def start_worker(api_url: str, pool: str, workspace: Path, log: Path, auth: str | None = None) -> subprocess.Popen:
    """``prefect worker start --pool POOL`` in its own process group."""
    env = _workspace_env(api_url, workspace, auth)
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"],
            cwd=workspace,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def cuda_available() -> bool:
    """Whether this machine can run the ``gpu`` pool's work."""
    import torch

    return torch.cuda.is_available()


def start_services(workspace: Path, port: int, model_name: str, params: Params | None = None) -> Services:
    """Everything serve starts, in order; on any failure what was started is stopped again.

    A server it starts requires an API auth string (see :func:`api_auth_string`); with ``PREFECT_API_URL`` set,
    that server is used with whatever ``PREFECT_API_AUTH_STRING`` says. With a webhook URL (``params``' notify
    section or ``$HEADSTART_WEBHOOK_URL``) the notification automations are created too.
    """
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from flows.concurrency import ensure_limit, limit_name
    from flows.notifications import configure_notifications

    logs = workspace / "runs" / "serve"
    logs.mkdir(parents=True, exist_ok=True)
    services = Services(os.environ.get("PREFECT_API_URL", ""), os.environ.get(AUTH_ENV) or None)
    process_started = None
    try:
        if not services.api_url:
            services.auth = api_auth_string(workspace)
            process, services.api_url = start_server(
                port, workspace / ".prefect", logs / "server.log", auth=services.auth
            )
            services.processes.append(process)
            process_started = process
        with temporary_settings(updates={PREFECT_API_URL: services.api_url, PREFECT_API_AUTH_STRING: services.auth}):
            ensure_pools()
            ensure_limit(limit_name(model_name))
            if params is not None:
                services.automations = configure_notifications(params, model_name)
        deploy(services.api_url, workspace, auth=services.auth)
        for pool in ("local", "gpu") if cuda_available() else ("local",):
            worker = start_worker(services.api_url, pool, workspace, logs / f"worker-{pool}.log", services.auth)
            services.processes.append(worker)
        if process_started is not None:  # only the API this serve started: one given (or another serve's, read
            services.record_api_url(workspace)  # from the workspace) is not this serve's to announce or remove
    except BaseException:
        services.stop()
        raise
    return services
