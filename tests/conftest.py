"""Shared fixtures: the demo data, temporary git + DVC workspaces, and one Prefect test server per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path

import pytest

from headstart.ground.environment import apply_quiet_environment

apply_quiet_environment()  # before albumentations, Prefect and DVC are imported: no phoning home from tests

VENV_BIN = Path(sys.executable).parent
# Under xdist each worker (and every process it starts) gets its share of the cores for torch's threads: N workers
# each running torch on every core spin their thread pools against each other, and the suite's CPU time doubles.
if workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(workers))))
# Subprocesses (headstart, dvc, dvc repro's stage commands) come from this venv.
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"
# features by torch: each of the suite's many tiny extractors would pay an ONNX export (~10 s) for a few images;
# tests/model/test_onnx_features.py runs the default engine
os.environ["HEADSTART_FEATURE_ENGINE"] = "torch"
SESSION_MARK = pytest.StashKey[str]()  # the leftover-process marker (the controller's only)
LEFTOVER_GRACE = 30.0  # seconds for processes to stop after the session: SeaweedFS takes the longest


def pytest_configure(config: pytest.Config) -> None:
    """The controller marks every process the session starts (xdist workers inherit the mark)."""
    from tests.support.leftovers import new_marker

    if not hasattr(config, "workerinput"):
        config.stash[SESSION_MARK] = new_marker()


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, object, object]:
    """After the session fixtures (and xdist's workers) are gone: fail the session naming each process it started
    that is still alive, then kill those."""
    from tests.support.leftovers import describe, kill, wait_for_leftovers

    result = yield
    if (marker := session.config.stash.get(SESSION_MARK, None)) is None:
        return result
    if left := wait_for_leftovers(marker, LEFTOVER_GRACE):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        title, lines = "processes the test session started are still running (killed now)", describe(left)
        if reporter is None:
            print(title, *lines, sep="\n", file=sys.stderr)
        else:
            reporter.write_line("")  # off the progress line
            reporter.write_sep("=", title, red=True)
            for line in lines:
                reporter.write_line(line, red=True)
        kill(left)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return result


# Tests that use these fixtures need a server (the session's SeaweedFS or Prefect server): marked `server`
# automatically, so `-m "not server"` can never run one by mistake and a new test cannot forget its marker.
SERVER_FIXTURES = frozenset({"seaweedfs", "bucket", "prefect_server"})
MODEL_TESTS = Path(__file__).parent / "model"  # every test there runs a torch model: marked `slow` as a whole


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads xdist_group marks into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a server `server`: by the fixtures it uses, or an "s3" parameter (the backend
    fixtures and tests parametrized over local and S3 ask for a bucket only then)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_s3 = callspec is not None and any(value == "s3" for value in callspec.params.values())
        if on_s3 or SERVER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.server)
        if item.path.is_relative_to(MODEL_TESTS):
            item.add_marker(pytest.mark.slow)
        if _uses_module_fixtures(item):  # `--dist loadgroup`: built once, on one worker; other tests spread out
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Under `--dist loadgroup`, a grouped test's node id carries its group (xdist's scheduler reads nothing else):
    without it every worker rebuilds the module's fixtures (models, deployments) and the suite's time multiplies."""
    if not session.config.getoption("loadgroup", default=False):
        return
    lost = [i.nodeid for i in session.items if any(i.iter_markers("xdist_group")) and "@" not in i.nodeid]
    if lost:
        raise pytest.UsageError(f"xdist_group marks did not reach the node ids (xdist vs pytest version?): {lost[:3]}")


def _uses_module_fixtures(item: pytest.Item) -> bool:
    fixtures = getattr(item, "_fixtureinfo", None)
    if fixtures is None:
        return False
    return any(d.scope == "module" for defs in fixtures.name2fixturedefs.values() for d in defs)


@pytest.fixture(scope="session")
def fashion_idx_dir() -> Path:
    """The Fashion-MNIST IDX folder (fetched once into the user cache with apt-get download)."""
    from headstart.ground.paths import cache_dir
    from headstart.library.data.fashion_mnist import locate_idx_dir

    return locate_idx_dir(cache_dir() / "debs")


@pytest.fixture(scope="session")
def tiny_split(tmp_path_factory: pytest.TempPathFactory, fashion_idx_dir: Path):
    """A factory: (per_class, test_per_class, seed) → (folder with split.csv, split table) of real Fashion-MNIST
    PNGs, the test split drawn from the official test file."""
    from headstart.ground.params import SplitParams
    from headstart.library.data.fashion_mnist import export_split
    from headstart.library.data.manifest import build_manifest
    from headstart.library.data.split import make_split, save_split

    def make(per_class: int, test_per_class: int, seed: int):
        base = tmp_path_factory.mktemp(f"tiny-{per_class}-{test_per_class}-{seed}")
        pool = export_split(fashion_idx_dir, "train", per_class, seed, base / "pool").root
        fixed = export_split(fashion_idx_dir, "test", test_per_class, seed, base / "fixed").root
        split = make_split(build_manifest(pool).table, pool, SplitParams(), build_manifest(fixed).table, fixed)
        save_split(split, base / "split.csv")
        return base, split.table

    return make


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """One real ``prefect server start`` (127.0.0.1) for the whole session, with every service running
    (scheduler, triggers); in-process flows and subprocesses both talk to it."""
    import signal

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.services import start_server
    from headstart.ground.errors import ToolError
    from tests.support.seaweedfs import free_ports

    fast_services = {
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",  # scheduled runs appear quickly
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "2",  # a crashed run's lapsed slot is reclaimed soon
    }
    for attempt in range(3):  # a port free when chosen can be taken before uvicorn binds it (parallel workers)
        home = tmp_path_factory.mktemp("prefect-server")
        [port] = free_ports(1)
        try:
            process, api_url = start_server(port, home, home / "server.log", fast_services)
            break
        except ToolError:
            if attempt == 2:
                raise
    os.environ["PREFECT_API_URL"] = api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield api_url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory):
    """One SeaweedFS S3 server per test session; the AWS variables point boto3 at it while it runs."""
    from tests.support.seaweedfs import start_seaweedfs

    server = start_seaweedfs(VENV_BIN / "weed", tmp_path_factory.mktemp("seaweedfs"))
    saved = {key: os.environ.get(key) for key in server.env()}
    os.environ.update(server.env())
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.thaw()
    server.stop()


@pytest.fixture
def bucket(seaweedfs) -> str:
    """A fresh bucket on the session's SeaweedFS."""
    import uuid

    import boto3

    name = f"t-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace as `headstart init` makes it (git + DVC, params.yaml, dvc.yaml, a local DVC remote); cwd
    is set to it."""
    from tasks.dvc_stages import init_pipeline_workspace
    from tests.support.params import suite_params_template

    monkeypatch.setenv("HEADSTART_DVC_REMOTE", str(tmp_path / "remote"))
    root = init_pipeline_workspace(tmp_path / "ws", suite_params_template(tmp_path / "template"))
    monkeypatch.chdir(root)
    return root
