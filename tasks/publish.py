"""The publish step, after promotion and best-effort: the summary records the promotion, the gate's decision
becomes a ``headstart.gate.decided`` Prefect event (what notifications and dashboards react to), and the
dashboards rendered by the report step become keyed Prefect artifacts. A failure here is logged; the run stays as
it is."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable

from headstart.library.registry.registry import open_registry
from headstart.library.reports.dashboard import Dashboard, registry_page
from headstart.library.reports.overview import gather_overview, overview_dashboard
from tasks.promote import REJUDGED
from tasks.step import StepContext

log = logging.getLogger(__name__)


def publish_dashboards(pages: list[Dashboard]) -> dict[str, str]:
    """Create (or add a version to) each keyed artifact; returns what -> key."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    for page in pages:
        if page.kind == "table":
            create_table_artifact(page.body, key=page.key, description=page.description)
        else:
            create_markdown_artifact(page.body, key=page.key, description=page.description)
    return {page.what: page.key for page in pages}


GATE_DECIDED = "headstart.gate.decided"


def decision_payload(summary: dict, model: str, primary_metric: str) -> dict:
    """What a ``headstart.gate.decided`` event carries: enough for a notification to say what happened."""
    decision = summary["decision"]
    return {
        "model": model,
        "version": summary["version"],
        "verdict": decision["verdict"],
        "primary_metric": {"name": primary_metric, "value": summary["metrics"][primary_metric]},
        "champion_before": decision.get("champion"),
        "champion_after": summary["champion"],
        "promoted": summary["promoted"],
        "failing_rules": [rule["rule"] for rule in decision["rules"] if rule["verdict"] == "FAIL"],
        "run_id": summary["run_id"],
    }


def decision_event_id(model: str, version: str) -> uuid.UUID:
    """The decision event's id: the same for the same model and version, whoever emits it."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{GATE_DECIDED}/{model}/{version}")


def emit_decision(payload: dict) -> bool:
    """One event per decision: its id is derived from model and version, so a retried publish sends the same
    event again rather than a new one. Prefect's triggers skip an id they have already seen only while they
    remember it (in memory: a server restart forgets), so an event already in the server's history is not sent
    again. Returns whether it was sent. Receivers de-duplicate by the ``id`` in the webhook body for the window
    this cannot close (an event sent but not yet stored when the server went down)."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    event_id = decision_event_id(payload["model"], payload["version"])
    if event_recorded(event_id):
        log.info("the decision event %s is already in the server's history: not sent again", event_id)
        return False
    emit_event(
        event=GATE_DECIDED,
        resource={
            "prefect.resource.id": f"headstart.model.{payload['model']}",
            "prefect.resource.name": payload["model"],
        },
        related=[
            {"prefect.resource.id": f"headstart.version.{payload['version']}", "prefect.resource.role": "version"}
        ],
        payload=payload,
        id=event_id,
    )
    EventsWorker.drain_all()  # sent before the run ends, not whenever the background client gets to it
    return True


def event_recorded(event_id: uuid.UUID) -> bool:
    """Whether the Prefect server's event history holds an event with this id (its events API)."""
    from datetime import UTC, datetime

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter, EventOccurredFilter

    ever = EventOccurredFilter(since=datetime(2000, 1, 1, tzinfo=UTC))  # the default looks back 180 days only
    with get_client(sync_client=True) as client:
        return bool(client.read_events(EventFilter(id=EventIDFilter(id=[event_id]), occurred=ever), limit=1).events)


def final_summary(ctx: StepContext) -> dict:
    """The report's summary with the promotion's outcome filled in."""
    summary = dict(ctx.result("report").summary)
    record = ctx.result("promote")
    summary["promoted"] = record is not None
    rejudged = ctx.results.get(REJUDGED)  # judged again when the champion moved before promotion
    summary["decision"] = (rejudged or ctx.result("gate")).to_dict()
    summary["champion"] = record.version if record is not None else summary["champion"]
    return summary


def run(ctx: StepContext) -> dict:
    """Rewrite summary.json with the promotion's outcome, then send the decision event, publish the run's
    dashboards and, last, the overview across runs. Each of the three is attempted whatever became of the others
    (the overview reads the whole registry, the likeliest to fail); the first failure is raised at the end."""
    summary = final_summary(ctx)
    partial = ctx.run.summary.with_suffix(".partial")
    partial.write_text(json.dumps(summary, indent=2))
    partial.replace(ctx.run.summary)  # atomic: readers see the old summary or the new, never half
    model, metric = ctx.params.registry.model_name, ctx.params.gate.primary_metric
    failures: list[Exception] = []

    def attempt(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as exc:
            log.warning("publish: %s failed: %s", what, exc)
            failures.append(exc)

    attempt("the decision event", lambda: emit_decision(decision_payload(summary, model, metric)))
    pages = [*ctx.result("report").dashboards, registry_page(summary, model)]
    attempt("the run's dashboards", lambda: summary.setdefault("artifacts", {}).update(publish_dashboards(pages)))
    overview = lambda: overview_dashboard(gather_overview(open_registry(ctx.params.registry), metric))  # noqa: E731
    attempt("the overview", lambda: summary.setdefault("artifacts", {}).update(publish_dashboards([overview()])))
    if failures:
        raise failures[0]
    return summary
