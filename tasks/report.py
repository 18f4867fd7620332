"""The report step: the run summary and the rendered dashboards, written before the champion moves.

Anything that can fail here (a chart, the augmentation preview) fails the run while the registry still holds
the champion it judged against.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from headstart.library.data.images import load_rgb_array
from headstart.library.registry.registry import open_registry
from headstart.library.reports.dashboard import (
    Dashboard,
    health_page,
    load_dashboards,
    render_dashboards,
    save_dashboards,
)
from headstart.library.reports.model_card import render_model_card
from tasks.step import StepContext


@dataclass(frozen=True)
class RunReport:
    """The summary (``promoted`` stays ``None`` until the promote step has run) and the dashboards."""

    summary: dict
    dashboards: list[Dashboard]


def preview_images(split: pd.DataFrame, per_preview: int = 4) -> list[tuple[np.ndarray, str]]:
    """The first training image of each of the first ``per_preview`` classes, with its class."""
    train = split[split["split"] == "train"].sort_values("label", kind="stable")
    firsts = train.groupby("label", sort=True).head(1).head(per_preview)
    return [(load_rgb_array(Path(path)), label) for path, label in zip(firsts["file"], firsts["label"], strict=True)]


def build_summary(ctx: StepContext) -> dict:
    """What the run did and decided, from the steps' results."""
    params = ctx.params
    trained, evaluation, decision = ctx.result("train"), ctx.result("evaluate"), ctx.result("gate")
    lineage = trained.config.lineage
    metrics = evaluation.metrics
    return {
        "run_id": ctx.flow_run_id or "local",
        "run_dir": str(ctx.run.root),
        "data_dir": params.data.dir,
        "data_md5": lineage["data_md5"],
        "test_data_md5": lineage["test_data_md5"],
        "scenario": trained.config.scenario,  # `auto` resolved
        "backbone": params.model.backbone,
        "weights": params.model.weights,
        "split": {k: int(v) for k, v in ctx.result("split").table["split"].value_counts().items()},
        "health": ctx.result("health").summary(),
        "metrics": {k: metrics[k] for k in ("accuracy", "macro_f1", "test_images")},
        "history": trained.history,
        "features_from_cache": trained.features_from_cache,
        "features_extracted": trained.features_extracted,  # images run through the backbone (the rest: the store)
        "model_dir": str(trained.model_dir),
        "lineage": lineage,
        "trigger": ctx.trigger,
        "decision": decision.to_dict(),
        "registry": open_registry(ctx.params.registry).storage.uri,
        "version": ctx.result("register"),
        "promoted": None,  # set once the promote step has run
        "champion": decision.champion,  # the champion judged against; the promote step updates it
    }


def _tile(path: Path) -> np.ndarray | None:
    """An image for the health page, or None when it is gone or unreadable (the page is best shown, not owed)."""
    try:
        return load_rgb_array(path)
    except (OSError, ValueError):
        return None


def run(ctx: StepContext) -> RunReport:
    """Write summary.json and the dashboards into the run folder."""
    summary = build_summary(ctx)
    preview = preview_images(ctx.result("split").table) if ctx.params.augment else None
    card = render_model_card(asdict(ctx.result("train").config), ctx.result("evaluate").metrics, ctx.result("gate"))
    pages = render_dashboards(
        summary, ctx.result("evaluate").metrics, ctx.params.registry.model_name, card, preview, ctx.params.augment
    )
    health = ctx.result("health").to_dict()
    doubtful = (health.get("label_issues") or {}).get("issues", [])[:12]
    tiles = [
        (tile, f"{i['label']} → {i['suggested']}") for i in doubtful if (tile := _tile(Path(i["file"]))) is not None
    ]
    pages.insert(2, health_page(health, ctx.params.registry.model_name, tiles))
    save_dashboards(pages, ctx.run.dashboard)
    ctx.run.summary.write_text(json.dumps(summary, indent=2))
    return RunReport(summary, pages)


def load(ctx: StepContext) -> RunReport:
    """Summary and dashboards as written."""
    return RunReport(json.loads(ctx.run.summary.read_text()), load_dashboards(ctx.run.dashboard))
