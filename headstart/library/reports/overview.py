"""How a model has done across retrains, read from the registry alone: every registered version's metrics and
verdict, the champion alias's history, the last decisions with their failing rules, and the data-health trends.

Rendered once as Markdown: the ``<model>-overview`` Prefect artifact publishes it as is, and
``headstart report`` turns the same Markdown into a self-contained HTML page (markdown-it, raw HTML off).
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from headstart.ground.markdown_text import plain
from headstart.ground.run_folder import DECISION, HEALTH
from headstart.library.registry.errors import RegistryError
from headstart.library.registry.registry import Registry
from headstart.library.registry.reproductions import latest_outcome
from headstart.library.reports.charts import health_trend_png, markdown_image, overview_png
from headstart.library.reports.dashboard import Dashboard, artifact_key
from headstart.library.storage.backends import StorageError

log = logging.getLogger(__name__)
MOVED_BY = {"promote": "gate", "manual-promote": "manual", "rollback": "rollback"}  # alias actions, as ops say them


@dataclass(frozen=True)
class VersionPoint:
    """One registered version as the overview shows it."""

    version: str
    created: str  # ISO time of registration
    accuracy: float | None
    macro_f1: float | None
    verdict: str | None  # the gate's PASS / FAIL
    failing_rules: list[str] = field(default_factory=list)
    drift_mmd2: float | None = None
    drift_p_value: float | None = None
    label_issue_fraction: float | None = None
    read: bool = True  # False: its decision or health file could not be read (listed, not judged)
    reproduced: str | None = None  # the newest `headstart reproduce` outcome: "reproduced on <date>: identical"


@dataclass(frozen=True)
class Overview:
    """Everything the overview shows, in JSON-friendly form."""

    model: str
    registry: str
    primary_metric: str
    generated: str
    champion: str | None
    versions: list[VersionPoint]
    aliases: list[dict]  # the champion alias's moves, oldest first (seq, version, action, at, reason)

    def to_dict(self) -> dict:
        """JSON-friendly form (written beside the HTML report)."""
        return asdict(self)


def gather_overview(registry: Registry, primary_metric: str = "accuracy", detailed: int = 30) -> Overview:
    """Read the overview from ``registry``. The newest ``detailed`` versions also have their decision and health
    files read (two reads each); older ones show their manifest's metrics and verdict only."""
    manifests = registry.versions()
    points = []
    for n, manifest in enumerate(manifests):
        metrics = manifest.get("metrics") or {}
        point = VersionPoint(manifest["version"], manifest["created"], metrics.get("accuracy"),
                             metrics.get("macro_f1"), manifest.get("decision"))  # fmt: skip
        points.append(_detailed(registry, point) if n >= len(manifests) - detailed else point)
    aliases = [{k: getattr(r, k) for k in ("seq", "version", "action", "at", "reason")} for r in registry.history()]
    return Overview(
        registry.model,
        registry.storage.uri,
        primary_metric,
        datetime.now(UTC).isoformat(timespec="seconds"),
        aliases[-1]["version"] if aliases else None,
        points,
        aliases,
    )


def _detailed(registry: Registry, point: VersionPoint) -> VersionPoint:
    """The point with its failing rules and health figures, read (verified) from the version's files."""
    try:
        decision = json.loads(registry.read_file(point.version, DECISION) or b"{}")
        health = json.loads(registry.read_file(point.version, HEALTH) or b"{}")
        failing = [str(rule["rule"]) for rule in decision.get("rules", []) if rule.get("verdict") == "FAIL"]
        drift, issues = health.get("drift") or {}, health.get("label_issues") or {}
        figures = {"drift_mmd2": _number(drift.get("mmd2")), "drift_p_value": _number(drift.get("p_value")),
                   "label_issue_fraction": _number(issues.get("fraction"))}  # fmt: skip
    except (RegistryError, StorageError, ValueError, TypeError, AttributeError, KeyError) as exc:
        # verified but not what a decision or health file holds (a version registered by other code)
        log.warning("%s/%s: not read for the overview (%s)", registry.model, point.version, exc)
        return VersionPoint(**{**asdict(point), "read": False})
    try:
        reproduced = latest_outcome(registry, point.version)  # untrusted records are skipped inside
    except (RegistryError, StorageError) as exc:
        log.warning("%s/%s: reproductions not read for the overview (%s)", registry.model, point.version, exc)
        reproduced = "(not readable)"
    return VersionPoint(**{**asdict(point), "failing_rules": failing, **figures, "reproduced": reproduced})


def _number(value: object) -> float | None:
    """A figure from a stored file: a number or None, anything else refused."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise TypeError(f"{value!r} is not a number")
    return value


def _cell(value: object) -> str:
    """A table cell's text, escaped (see :func:`plain`)."""
    return plain("—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))


def overview_markdown(overview: Overview, last_decisions: int = 10) -> str:
    """The overview page: the champion, the metric chart, the alias history, the last decisions and the health
    trends."""
    lines = [f"# {plain(overview.model)}: overview across retrains", ""]
    lines.append(
        f"Champion: **{plain(overview.champion or 'none yet')}** · {len(overview.versions)} registered version(s) · "
        f"registry {plain(overview.registry)} · generated {overview.generated}"
    )
    if overview.versions:
        lines += [
            "",
            markdown_image(
                overview_png([asdict(p) for p in overview.versions], overview.aliases, overview.primary_metric),
                f"{overview.primary_metric} across versions",
            ),
        ]
    lines += [
        "",
        "## Champion history",
        "",
        "| # | version | by | at | reason |",
        "| --- | --- | --- | --- | --- |",
    ]
    for alias in reversed(overview.aliases):
        cells = (alias["seq"], alias["version"], MOVED_BY.get(alias["action"], alias["action"]), alias["at"],
                 alias["reason"])  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += [
        "",
        f"## Last {last_decisions} decisions",
        "",
        "| version | registered | verdict | accuracy | macro-F1 | failing rules | reproduced |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for point in reversed(overview.versions[-last_decisions:]):
        failing = ", ".join(point.failing_rules) if point.read else "(decision not readable)"
        cells = (point.version, point.created, point.verdict, point.accuracy, point.macro_f1, failing or "none",
                 point.reproduced or "not tried")  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    measured = [p for p in overview.versions if p.drift_p_value is not None or p.label_issue_fraction is not None]
    if measured:
        lines += [
            "",
            "## Data health across versions",
            "",
            markdown_image(health_trend_png([asdict(p) for p in measured]), "health trends"),
        ]
    return "\n".join(lines) + "\n"


def overview_dashboard(overview: Overview) -> Dashboard:
    """The keyed ``<model>-overview`` artifact: every run adds a version of it."""
    champion = overview.champion or "none"
    return Dashboard("overview", artifact_key(overview.model, "overview"), "markdown", overview_markdown(overview),
                     f"{len(overview.versions)} versions; champion {champion}")  # fmt: skip


HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1300px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
</style></head>
<body>
{body}
</body></html>
"""


def overview_html(markdown: str, title: str) -> str:
    """The overview Markdown as one self-contained HTML page (images stay inline data URIs; raw HTML in any
    name is escaped, not rendered)."""
    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    return HTML_PAGE.format(title=html.escape(title), body=renderer.render(markdown))
