"""The publish step, after promotion and best-effort: the summary records the promotion, and the dashboards
rendered by the report step become keyed Prefect artifacts. A failure here is logged; the run stays as it is."""

from __future__ import annotations

import json

from headstart.library.registry.registry import open_registry
from headstart.library.reports.dashboard import Dashboard, registry_page
from headstart.library.reports.overview import gather_overview, overview_dashboard
from tasks.promote import REJUDGED
from tasks.step import Step, StepContext


def publish_dashboards(pages: list[Dashboard]) -> dict[str, str]:
    """Create (or add a version to) each keyed artifact; returns what -> key."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    for page in pages:
        if page.kind == "table":
            create_table_artifact(page.body, key=page.key, description=page.description)
        else:
            create_markdown_artifact(page.body, key=page.key, description=page.description)
    return {page.what: page.key for page in pages}


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
    """Rewrite summary.json with the promotion's outcome, then publish the dashboards."""
    summary = final_summary(ctx)
    partial = ctx.run.summary.with_suffix(".partial")
    partial.write_text(json.dumps(summary, indent=2))
    partial.replace(ctx.run.summary)  # atomic: readers see the old summary or the new, never half
    overview = gather_overview(open_registry(ctx.params.registry), ctx.params.gate.primary_metric)
    pages = [*ctx.result("report").dashboards, registry_page(summary, ctx.params.registry.model_name),
             overview_dashboard(overview)]  # fmt: skip
    summary["artifacts"] = publish_dashboards(pages)
    return summary


STEP = Step(
    name="publish",
    run=run,
    reads=("summary", "dashboard", "promotion"),
    in_dvc=False,
    best_effort=True,
)
