"""The data watcher: a new DVC version of a dataset becomes one ``headstart.dataset.changed`` event.

Each tracked dataset's md5 (from its ``.dvc`` file) is compared with the data md5 of the latest version
registered for it — failed challengers included, so a rejected data version does not retrigger forever. The
event id is uuid5(dataset, md5) and each emission is recorded durably in an event ledger beside the registry,
so the same change never triggers twice, even across a Prefect server restart.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from prefect import flow

from headstart.ground.errors import ToolError
from headstart.ground.params import Params, load_params
from headstart.library.data.versioning import read_dvc_md5
from headstart.library.health.checkup import drift_of_folder
from headstart.library.registry.registry import Registry, open_registry
from headstart.library.storage.event_ledger import EventLedger

log = logging.getLogger(__name__)
EVENT = "headstart.dataset.changed"
NAMESPACE = uuid.UUID("6f1d3a52-4c1e-4d5e-9a51-0f1e6a2b9c10")  # fixed: ids must be stable across machines


@dataclass(frozen=True)
class DataChange:
    """A dataset whose current DVC md5 differs from the one last registered for it."""

    dataset: str
    old_md5: str | None
    new_md5: str
    event_id: str
    drift: dict | None = None  # the new data's drift from the champion's training data (measured before emitting)


def change_id(dataset: str, md5: str) -> str:
    """The event id of one data change: the same change always gets the same id."""
    return str(uuid.uuid5(NAMESPACE, f"{dataset}:{md5}"))


def find_changes(workspace: Path, params: Params, registry: Registry) -> list[DataChange]:
    """Tracked datasets (``data/*.dvc``, except the fixed test set) whose md5 is not the latest registered one."""
    test_set = Path(params.data.test_dir).name if params.data.test_dir else None
    versions = registry.versions()
    changes = []
    for dvc_file in sorted((workspace / "data").glob("*.dvc")):
        name = dvc_file.name.removesuffix(".dvc")
        if name == test_set:
            continue
        new = read_dvc_md5(dvc_file)
        registered = [m["data_md5"] for m in versions if m.get("dataset") == name]
        old = registered[-1] if registered else None
        if new != old:
            changes.append(DataChange(name, old, new, change_id(name, new)))
    return changes


def emit_change(change: DataChange) -> None:
    """One Prefect event; the resource id is what the deployment trigger matches."""
    from prefect.events import emit_event

    emit_event(
        event=EVENT,
        resource={
            "prefect.resource.id": f"headstart.dataset.{change.dataset}",
            "prefect.resource.name": change.dataset,
        },
        payload={
            "dataset": change.dataset,
            "old_md5": change.old_md5,
            "new_md5": change.new_md5,
            "drift": change.drift,  # how much changed: MMD², its p-value, class shift (or why not measured)
        },
        id=uuid.UUID(change.event_id),
    )


def measured_drift(folder: Path, params: Params, registry: Registry) -> dict:
    """The new data's drift for the event, or why not: nothing in measuring it may keep the event from being sent."""
    try:
        return drift_of_folder(folder, params, registry)
    except Exception as exc:  # informational only; the triggered run validates the data and names what is wrong
        log.warning("drift of %s not measured: %s", folder, exc)
        return {"skipped": f"not measured ({type(exc).__name__}: {exc})"}


def watch(
    workspace: Path, params_path: Path, overrides: list[str] | None = None, confirm_s: float = 15.0
) -> list[dict]:
    """Send one event per new data version not sent before; returns each change with ``emitted`` (this watch's
    event was confirmed by the server and recorded) and ``pending`` (sent but not confirmed: the events client
    drops what it cannot deliver, so the next watch sends it again)."""
    from prefect.events.worker import EventsWorker

    if not os.environ.get("PREFECT_API_URL"):
        raise ToolError(
            "watch needs a Prefect server to send events to: start `headstart serve` in this workspace "
            "(or set PREFECT_API_URL)"
        )
    params = load_params(workspace / params_path, overrides)
    registry = open_registry(params.registry)
    ledger = EventLedger(registry.storage, registry.model)
    results, sent = [], []
    for change in find_changes(workspace, params, registry):
        if ledger.recorded(change.event_id):
            results.append({**asdict(change), "emitted": False, "pending": False})
            continue
        if params.health.drift:
            change = replace(change, drift=measured_drift(workspace / "data" / change.dataset, params, registry))
        ledger.mark_pending(change.event_id, {"event": EVENT, **asdict(change)})
        emit_change(change)
        sent.append(change)
    EventsWorker.drain_all()  # the events client sends in the background: flush before confirming
    for change in sent:
        delivered = confirmed(change.event_id, confirm_s)
        fresh = delivered and ledger.record_once(change.event_id, {"event": EVENT, **asdict(change)})
        if delivered:
            ledger.clear_pending(change.event_id)
        results.append({**asdict(change), "emitted": fresh, "pending": not delivered})
    return results


def confirmed(event_id: str, timeout: float) -> bool:
    """Whether the server has the event (readable through its API) within ``timeout`` seconds."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter

    query = EventFilter(id=EventIDFilter(id=[uuid.UUID(event_id)]))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with get_client(sync_client=True) as client:
                if client.read_events(filter=query, limit=1).events:
                    return True
        except Exception as exc:  # the server is down or refusing: not confirmed (httpx and Prefect errors alike)
            log.warning("could not confirm event %s with the server: %s", event_id, exc)
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


@flow(name="watch-data")
def watch_data(workspace: str = ".", params_path: str = "params.yaml") -> list[dict]:
    """The watcher as a flow, so it can run on a schedule; it fails while a change is pending (sent but not
    confirmed), so a scheduled watch shows it."""
    changes = watch(Path(workspace), Path(params_path))
    pending = [c["dataset"] for c in changes if c["pending"]]
    if pending:
        raise ToolError(f"data changes of {pending} were sent but not confirmed by the server; the next watch resends")
    return changes
