"""Dashboards: keyed Prefect artifacts for every retrain run, so each keeps its history across runs."""

from __future__ import annotations

import json
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.gate import Decision
from tasks.images import load_rgb_array
from tasks.report_images import augmentation_grid_png, confusion_png, curves_png, markdown_image
from tasks.split import load_split


def artifact_key(model_name: str, what: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in f"{model_name}-{what}".lower())


def preview_images(split_csv: Path, per_preview: int = 4) -> list:
    """The first training image of each of the first ``per_preview`` classes."""
    train = load_split(split_csv).query("split == 'train'")
    firsts = train.groupby("label", sort=True).head(1).head(per_preview)
    return [load_rgb_array(Path(path)) for path in firsts["file"]]


def publish(summary: dict, model_name: str, augment: dict | None = None) -> dict[str, str]:
    """Metrics table, gate decision, confusion matrix, curves, augmentation preview, model card and registry
    location."""
    run = Path(summary["run_dir"])
    metrics = json.loads((run / "metrics.json").read_text())
    classes = list(metrics["per_class"])
    keys = {
        what: artifact_key(model_name, what)
        for what in ("metrics", "decision", "confusion", "curves", "augmentation", "model-card", "registry")
    }
    # The UI takes a table's columns from its first row, so every row carries the same keys.
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
    rows = [overall, *per_class]  # the headline first: the UI pages tables by ten rows
    create_table_artifact(rows, key=keys["metrics"], description=f"test metrics of run {summary['run_id']}")
    decision = Decision.from_dict(summary["decision"])
    create_markdown_artifact(
        f"# Gate decision\n\nTest accuracy **{metrics['accuracy']:.4f}**, macro-F1 **{metrics['macro_f1']:.4f}** "
        f"on {metrics['test_images']} images.\n\n{decision.to_markdown()}",
        key=keys["decision"],
        description=f"{decision.verdict} for version {summary['version']}",
    )
    create_markdown_artifact(
        f"# Confusion matrix\n\n{markdown_image(confusion_png(metrics['confusion_matrix'], classes), 'confusion')}",
        key=keys["confusion"],
        description="rows: true class, columns: predicted",
    )
    if summary["history"]:
        create_markdown_artifact(
            f"# Training curves\n\n{markdown_image(curves_png(summary['history']), 'curves')}",
            key=keys["curves"],
            description="per epoch",
        )
    if augment:
        grid = augmentation_grid_png(preview_images(run / "split.csv"), augment)
        create_markdown_artifact(
            f"# Augmentation preview\n\n{markdown_image(grid, 'augmentation preview')}",
            key=keys["augmentation"],
            description="training images through the params' albumentations pipeline",
        )
    card = (run / "model_card.md").read_text() if (run / "model_card.md").is_file() else "(no model card)"
    create_markdown_artifact(card, key=keys["model-card"], description=f"version {summary['version']}")
    where = (
        f"# Registry\n\n- registry: `{summary['registry']}`\n- version: `{summary['version']}`\n"
        f"- champion: `{summary['champion']}`\n- run folder: `{summary['run_dir']}`\n"
    )
    create_markdown_artifact(where, key=keys["registry"], description="where this run's objects are")
    return keys
