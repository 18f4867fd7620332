"""The run's dashboards as data: keyed tables and Markdown pages, rendered before the champion moves and
published to Prefect (as artifacts) after it. Rendering is pure; only ``save``/``load`` touch files."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from headstart.library.evaluation.gate import Decision
from headstart.library.reports.charts import (
    augmentation_grid_png,
    confusion_png,
    curves_png,
    labelled_tiles_png,
    markdown_image,
    recall_bars_png,
)


@dataclass(frozen=True)
class Dashboard:
    """One Prefect artifact: a table (list of rows) or a Markdown page, under a key kept across runs."""

    what: str  # metrics, decision, confusion, curves, augmentation, model-card, registry
    key: str  # <model>-<what>: one key per model keeps every run's version of it
    kind: Literal["table", "markdown"]
    body: Any  # list[dict] for tables, str for Markdown
    description: str


def artifact_key(model_name: str, what: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in f"{model_name}-{what}".lower())


def metrics_rows(metrics: dict) -> list[dict]:
    """The overall row first (the UI pages tables by ten rows), then one per class, all with the same columns
    (the UI takes a table's columns from its first row)."""
    per_class = [
        {"class": name, "accuracy": None, **{k: round(m[k], 4) for k in ("precision", "recall", "f1", "support")}}
        for name, m in metrics["per_class"].items()
    ]
    overall = {
        "class": "overall",  # precision, recall and f1: macro averages
        "accuracy": round(metrics["accuracy"], 4),
        "precision": round(metrics["macro_precision"], 4),
        "recall": round(metrics["macro_recall"], 4),
        "f1": round(metrics["macro_f1"], 4),
        "support": metrics["test_images"],
    }
    empty = dict.fromkeys(("precision", "recall", "f1"))
    transfer = [  # what transfer bought: the same head on pretrained vs randomly initialised backbone features
        {"class": f"transfer: head on {arm} features", "accuracy": round(metrics["transfer"][key], 4), **empty,
         "support": metrics["transfer"]["test_images"]}
        for arm, key in (("pretrained", "pretrained_accuracy"), ("random-init", "random_init_accuracy"))
    ] if "pretrained_accuracy" in metrics.get("transfer", {}) else []  # fmt: skip
    return [overall, *per_class, *transfer]


def render_dashboards(
    summary: dict,
    metrics: dict,
    model_name: str,
    model_card: str,
    preview: list[tuple[np.ndarray, str]] | None = None,
    augment: dict | None = None,
) -> list[Dashboard]:
    """Metrics table, gate decision, confusion matrix, curves, augmentation preview and model card of one run (the
    registry page follows the promotion: :func:`registry_page`)."""
    key = lambda what: artifact_key(model_name, what)  # noqa: E731
    decision = Decision.from_dict(summary["decision"])
    classes = list(metrics["per_class"])
    recall = {name: m["recall"] for name, m in metrics["per_class"].items()}
    recall_chart = markdown_image(recall_bars_png(recall, decision.champion_recall), "per-class recall")
    pages = [
        Dashboard(
            "metrics", key("metrics"), "table", metrics_rows(metrics), f"test metrics of run {summary['run_id']}"
        ),
        Dashboard(
            "decision",
            key("decision"),
            "markdown",
            f"# Gate decision\n\nTest accuracy **{metrics['accuracy']:.4f}**, macro-F1 **{metrics['macro_f1']:.4f}** "
            f"on {metrics['test_images']} images.\n\n{decision.to_markdown()}\n\n{recall_chart}",
            f"{decision.verdict} for version {summary['version']}",
        ),
        Dashboard(
            "confusion",
            key("confusion"),
            "markdown",
            f"# Confusion matrix\n\n{markdown_image(confusion_png(metrics['confusion_matrix'], classes), 'confusion')}",
            "rows: true class, columns: predicted",
        ),
    ]
    if summary["history"]:
        image = markdown_image(curves_png(summary["history"]), "curves")
        pages.append(Dashboard("curves", key("curves"), "markdown", f"# Training curves\n\n{image}", "per epoch"))
    if augment and preview:
        from headstart.library.data.transforms import augmentation_draws  # albumentations: only for the preview

        draws = augmentation_draws([image for image, _ in preview], augment)
        image = markdown_image(augmentation_grid_png(draws, [label for _, label in preview]), "augmentation preview")
        pages.append(
            Dashboard(
                "augmentation",
                key("augmentation"),
                "markdown",
                f"# Augmentation preview\n\n{image}",
                "training images through the params' albumentations pipeline",
            )
        )
    pages.append(Dashboard("model-card", key("model-card"), "markdown", model_card, f"version {summary['version']}"))
    return pages


def health_page(health: dict, model_name: str, tiles: list[tuple[np.ndarray, str]] | None = None) -> Dashboard:
    """The training data's health: the figures, each warning or failure of the health suite, and the most
    doubtful labels as thumbnails (given → suggested class)."""
    figures = health["near_duplicates"]
    issues = health.get("label_issues") or {}
    drift = health.get("drift") or {}
    lines = [
        "# Data health",
        "",
        "| check | finding |",
        "| --- | --- |",
        f"| test leaks | {figures['leaks']} training near duplicate(s) of test images, {figures['dropped']} dropped |",
        f"| look-alikes in training | {figures['within_class']} same-class pair(s), "
        f"{figures['across_classes']} across classes |",
        f"| suspected label errors | {issues.get('fraction', 0):.1%} of {issues.get('checked', 0)} images |"
        if issues else "| suspected label errors | not checked |",
        f"| drift from champion {drift.get('champion')} | MMD² {drift['mmd2']:.4g}, p={drift['p_value']:.3g} |"
        if drift.get("mmd2") is not None else f"| drift | {drift.get('skipped', 'not checked')} |",
    ]  # fmt: skip
    findings = health.get("failures", []) + health.get("warnings", [])
    if findings:
        lines += ["", "| severity | check | subject | finding |", "| --- | --- | --- | --- |"]
        lines += [f"| {f['severity']} | {f['check']} | {f['subject']} | {f['reason']} |" for f in findings[:50]]
    if tiles:
        images, captions = [t for t, _ in tiles], [c for _, c in tiles]
        lines += ["", "## Most doubtful labels (given → suggested)", "", markdown_image(
            labelled_tiles_png(images, captions), "suspected label errors")]  # fmt: skip
    verdict = "failed" if health.get("failures") else "passed"
    return Dashboard("health", artifact_key(model_name, "health"), "markdown", "\n".join(lines),
                     f"data health {verdict}")  # fmt: skip


def registry_page(summary: dict, model_name: str) -> Dashboard:
    """Where this run's objects are and what became of the version: rendered from the final summary, after the
    promote step (so it never announces a promotion that did not happen)."""
    outcome = "promoted to champion" if summary["promoted"] else f"not promoted; champion stays {summary['champion']}"
    where = (
        f"# Registry\n\n- registry: `{summary['registry']}`\n- version: `{summary['version']}` "
        f"(gate {summary['decision']['verdict']}: {outcome})\n- champion: `{summary['champion']}`\n"
        f"- run folder: `{summary['run_dir']}`\n"
    )
    return Dashboard(
        "registry", artifact_key(model_name, "registry"), "markdown", where, "where this run's objects are"
    )


def save_dashboards(pages: list[Dashboard], folder: Path) -> None:
    """One JSON file per dashboard, numbered in order (a rerun replaces the folder's pages)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.json"):
        stale.unlink()
    for n, page in enumerate(pages):
        (folder / f"{n:02d}-{page.what}.json").write_text(json.dumps(asdict(page)))


def load_dashboards(folder: Path) -> list[Dashboard]:
    """What :func:`save_dashboards` wrote."""
    return [Dashboard(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]
