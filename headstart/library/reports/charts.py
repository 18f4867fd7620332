"""PNG charts for the dashboards, drawn with matplotlib (pure: data in, PNG bytes out).

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, never through pyplot: no
display, no global figure state shared between threads (Prefect runs tasks in threads).
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable
from typing import ParamSpec

import matplotlib
import numpy as np
from matplotlib.figure import Figure

DPI = 100  # 1 inch = 100 px: the Prefect UI shows Markdown images at their pixel width, up to the page's
CHAMPION_COLOUR, CHALLENGER_COLOUR, FAIL_COLOUR = "#1f77b4", "#ff7f0e", "#d62728"


P = ParamSpec("P")


def text_only(chart: Callable[P, bytes]) -> Callable[P, bytes]:
    """Draw with mathtext off: class names, versions and reasons are text (``$^$`` would raise in mathtext,
    ``price $5-$10`` would render as garbled math). matplotlib reads the setting when each text is created."""

    @functools.wraps(chart)
    def drawn(*args: P.args, **kwargs: P.kwargs) -> bytes:
        with matplotlib.rc_context({"text.parse_math": False}):
            return chart(*args, **kwargs)

    return drawn


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


@text_only
def confusion_png(matrix: list[list[int]], classes: list[str]) -> bytes:
    """Rows = true class, columns = predicted; counts in the cells, colour = the row's share (recall on the
    diagonal), so a small class's errors show as clearly as a large one's. Full class names on both axes."""
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    n = len(classes)
    side = min(max(5.0, 0.75 * n + 2.5), 13.0)  # 10 classes: 10 x 10 in = 1000 px, fits a 1400 px page
    figure = Figure(figsize=(side, side * 0.9))
    axes = figure.add_subplot()
    shown = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04, label="share of the true class (row)")
    size = 11 if n <= 12 else 8
    for i in range(n):
        for j in range(n):
            axes.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=size,
                      color="white" if shares[i, j] > 0.55 else "black")  # fmt: skip
    axes.set_xticks(range(n), classes, rotation=40, ha="right", rotation_mode="anchor", fontsize=size)
    axes.set_yticks(range(n), classes, fontsize=size)
    axes.set_xlabel("predicted class", fontsize=12)
    axes.set_ylabel("true class", fontsize=12)
    axes.set_title("Confusion matrix (counts; colour: row-normalised)", fontsize=13)
    return _png(figure)


def best_epoch(history: list[dict[str, float]], key: str = "val_accuracy") -> dict | None:
    """The row with the highest ``key`` (the first of equals: the checkpoint training keeps), if any; a NaN score
    is never the best."""
    scored = [row for row in history if key in row and row[key] == row[key]]
    return max(scored, key=lambda row: row[key]) if scored else None


@text_only
def curves_png(history: list[dict[str, float]]) -> bytes:
    """Loss (left) and validation accuracy (right) per epoch, with axes, legends and the best epoch marked."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(11, 4))
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for key, colour in (("train_loss", CHALLENGER_COLOUR), ("val_loss", CHAMPION_COLOUR)):
        points = [(row["epoch"], row[key]) for row in history if key in row]
        if points:
            loss_axes.plot(*zip(*points, strict=True), marker="o", color=colour, label=key.replace("_", " "))
    loss_axes.set(title="Loss", xlabel="epoch", ylabel="loss")
    points = [(row["epoch"], row["val_accuracy"]) for row in history if "val_accuracy" in row]
    if points:
        accuracy_axes.plot(*zip(*points, strict=True), marker="o", color=CHAMPION_COLOUR, label="val accuracy")
    best = best_epoch(history)
    for axes in (loss_axes, accuracy_axes):
        if best is not None:
            label = f"best epoch {best['epoch']} (val accuracy {best['val_accuracy']:.3f})"
            axes.axvline(best["epoch"], color="green", linestyle="--", label=label)
        axes.set_xticks(sorted(set(epochs)) if len(set(epochs)) <= 20 else axes.get_xticks())
        axes.grid(alpha=0.3)
        if axes.has_data():
            axes.legend(loc="best", fontsize=9)
    accuracy_axes.set(title="Validation accuracy", xlabel="epoch", ylabel="accuracy")
    return _png(figure)


@text_only
def recall_bars_png(challenger: dict[str, float], champion: dict[str, float] | None) -> bytes:
    """Per-class recall: the challenger beside the champion it was judged against (alone on a first run)."""
    classes = list(challenger)
    y = np.arange(len(classes))
    height = 0.4 if champion else 0.7
    figure = Figure(figsize=(9, 0.45 * len(classes) + 1.5))
    axes = figure.add_subplot()
    axes.barh(y - (height / 2 if champion else 0), [challenger[c] for c in classes], height,
              color=CHALLENGER_COLOUR, label="challenger")  # fmt: skip
    if champion:  # a class the champion did not know gets no bar (not a misleading 0)
        known = [(n, champion[c]) for n, c in enumerate(classes) if c in champion]
        axes.barh([y[n] + height / 2 for n, _ in known], [r for _, r in known], height, color=CHAMPION_COLOUR,
                  label="champion")  # fmt: skip
    axes.set_yticks(y, classes)
    axes.invert_yaxis()  # classes top to bottom in their order
    axes.set_xlim(0, 1.0)
    axes.set_xlabel("recall (test split)")
    axes.set_title("Per-class recall" + (": challenger vs champion" if champion else ""))
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="lower right")
    return _png(figure)


@text_only
def augmentation_grid_png(draws: list[list[np.ndarray]], labels: list[str] | None = None) -> bytes:
    """One row per image: the original, then its augmented draws (see ``transforms.augmentation_draws``)."""
    columns = max(len(row) for row in draws)
    figure = Figure(figsize=(1.6 * columns, 1.7 * len(draws) + 0.4))
    grid = figure.subplots(len(draws), columns, squeeze=False)
    for row, images in enumerate(draws):
        for col, drawn in enumerate(images):
            axes = grid[row][col]
            axes.imshow(drawn, cmap="gray" if drawn.ndim == 2 else None)
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title("original" if col == 0 else f"draw {col}", fontsize=10)
        if labels:
            grid[row][0].set_ylabel(labels[row], fontsize=10)
    figure.suptitle("Augmentation preview: training images through the params' pipeline", fontsize=12)
    return _png(figure)


@text_only
def labelled_tiles_png(images: list[np.ndarray], captions: list[str], per_row: int = 6) -> bytes:
    """Images as tiles with a caption under each (the health page's suspected label errors: given → suggested)."""
    rows = (len(images) + per_row - 1) // per_row
    figure = Figure(figsize=(2.0 * per_row, 2.2 * rows))
    grid = figure.subplots(rows, per_row, squeeze=False)
    for n, axes in enumerate(grid.flat):
        axes.axis("off")
        if n < len(images):
            axes.imshow(images[n], cmap="gray" if images[n].ndim == 2 else None)
            axes.set_title(captions[n], fontsize=9)
    return _png(figure)


@text_only
def overview_png(versions: list[dict], aliases: list[dict], primary_metric: str) -> bytes:
    """The primary metric and macro-F1 of every registered version over time; the champion's periods shaded and
    labelled with its version; failed challengers as red crosses."""
    from datetime import UTC, datetime

    import matplotlib.dates as mdates

    from headstart.library.registry.registry import registry_time

    figure = Figure(figsize=(12, 4.5))
    axes = figure.add_subplot()
    times = [registry_time(v["created"]) for v in versions]
    series = [primary_metric] + (["macro_f1"] if primary_metric != "macro_f1" else [])
    for key, colour, style in zip(series, (CHAMPION_COLOUR, CHALLENGER_COLOUR), ("-", "--"), strict=False):
        points = [(t, v[key]) for t, v in zip(times, versions, strict=True) if v.get(key) is not None]
        if points:
            axes.plot(*zip(*points, strict=True), style, marker="o", color=colour, label=key.replace("_", "-"))
    failed = [(t, v[primary_metric]) for t, v in zip(times, versions, strict=True)
              if v.get("verdict") == "FAIL" and v.get(primary_metric) is not None]  # fmt: skip
    if failed:
        axes.scatter(*zip(*failed, strict=True), marker="x", s=90, color=FAIL_COLOUR, zorder=5,
                     label="failed challenger")  # fmt: skip
    end = max([*times, datetime.now(UTC)])
    for n, alias in enumerate(aliases):
        start = registry_time(alias["at"])
        stop = registry_time(aliases[n + 1]["at"]) if n + 1 < len(aliases) else end
        axes.axvspan(start, stop, color="green" if n % 2 == 0 else "olive", alpha=0.12,
                     label="champion period" if n == 0 else None)  # fmt: skip
        axes.annotate(f"{alias['version'][-8:]} ({alias['action']})", (start, 1.0), xycoords=("data", "axes fraction"),
                      xytext=(3, -12), textcoords="offset points", fontsize=8, rotation=0)  # fmt: skip
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(axes.xaxis.get_major_locator()))
    axes.set_ylabel("test score")
    axes.set_title(f"{primary_metric} and macro-F1 of every registered version")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=9)
    return _png(figure)


@text_only
def health_trend_png(versions: list[dict]) -> bytes:
    """Drift p-value (against the champion of the time) and the suspected label-error share, per version."""
    names = [v["version"][-8:] for v in versions]
    figure = Figure(figsize=(12, 3.8))
    drift_axes, label_axes = figure.subplots(1, 2)
    drift = [
        (n, v["drift_p_value"]) for n, v in zip(names, versions, strict=True) if v.get("drift_p_value") is not None
    ]
    if drift:
        drift_axes.plot(*zip(*drift, strict=True), marker="o", color=CHAMPION_COLOUR)
    else:
        _nothing_yet(drift_axes, "no drift measured yet (a first version has no champion to compare with)")
    drift_axes.set(title="Drift p-value vs the champion (low: drifted)", xlabel="version", ylim=(0, 1.05))
    labels = [(n, v["label_issue_fraction"]) for n, v in zip(names, versions, strict=True)
              if v.get("label_issue_fraction") is not None]  # fmt: skip
    if labels:
        label_axes.plot(*zip(*labels, strict=True), marker="o", color=CHALLENGER_COLOUR)
    else:
        _nothing_yet(label_axes, "label issues not checked")
    label_axes.set(title="Suspected label errors (share of training images)", xlabel="version")
    for axes in (drift_axes, label_axes):
        axes.tick_params(axis="x", rotation=30)
        axes.grid(alpha=0.3)
    return _png(figure)


def _nothing_yet(axes, why: str) -> None:
    """An empty chart that says why it is empty, instead of bare axes."""
    axes.text(0.5, 0.5, why, ha="center", va="center", wrap=True, transform=axes.transAxes, color="grey")
    axes.set_xticks([])
    axes.set_yticks([])


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown with the PNG inline as a data URI (Prefect's image artifact takes only a URL)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
