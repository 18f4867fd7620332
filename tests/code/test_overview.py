"""The overview across retrains, read from a real registry (local and SeaweedFS), and the matplotlib charts: their
data, their sizes, and hostile names kept as text."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from headstart.cli.main import app
from headstart.library.data.transforms import augmentation_draws
from headstart.library.registry.registry import Registry
from headstart.library.reports.charts import best_epoch, confusion_png, curves_png, recall_bars_png
from headstart.library.reports.overview import gather_overview, overview_html, overview_markdown
from tests.support.versions import FILES

HOSTILE = '<img src=x onerror="alert(1)"> | rule'


def version(registry: Registry, accuracy: float, verdict: str, failing: list[str], drift_p: float | None) -> str:
    rules = [{"rule": r, "value": "", "threshold": "", "verdict": "FAIL"} for r in failing]
    rules.append({"rule": "floor accuracy", "value": "", "threshold": "", "verdict": "PASS"})
    health = {"drift": {"mmd2": 0.01, "p_value": drift_p} if drift_p is not None else {"skipped": "first"},
              "label_issues": {"fraction": 0.02}}  # fmt: skip
    files = {**FILES, "decision.json": json.dumps({"verdict": verdict, "rules": rules}).encode(),
             "health.json": json.dumps(health).encode()}  # fmt: skip
    summary = {"metrics": {"accuracy": accuracy, "macro_f1": accuracy - 0.01}, "decision": verdict}
    return registry.register(files, summary)


def test_overview_reads_versions_aliases_and_decisions(registry: Registry) -> None:
    v1 = version(registry, 0.80, "PASS", [], None)
    registry.set_champion(v1, "promote", "first model")
    v2 = version(registry, 0.78, "FAIL", ["gain accuracy", HOSTILE], 0.4)
    v3 = version(registry, 0.85, "PASS", [], 0.3)
    registry.set_champion(v3, "promote", "gate PASS")
    registry.rollback()  # back to v1: an operator's move
    registry.storage.put(f"demo/versions/{v2}/health.json", b"tampered")  # behind the registry's back

    overview = gather_overview(registry, "accuracy")
    assert overview.champion == v1 and [p.version for p in overview.versions] == [v1, v2, v3]
    assert [(a["version"], a["action"]) for a in overview.aliases] == [
        (v1, "promote"),
        (v3, "promote"),
        (v1, "rollback"),
    ]
    points = {p.version: p for p in overview.versions}
    assert points[v3].failing_rules == [] and points[v3].drift_p_value == 0.3
    assert not points[v2].read  # a tampered file is refused, the version still listed with its manifest's figures
    assert points[v2].verdict == "FAIL" and points[v2].accuracy == 0.78

    markdown = overview_markdown(overview)
    decisions = markdown.split("## Last 10 decisions")[1].split("##")[0]
    rows = [line for line in decisions.splitlines() if line.startswith(f"| {v1[:4]}")]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == [v3, v2, v1]  # newest first
    assert "decision not readable" in rows[1]
    history = markdown.split("## Champion history")[1].split("##")[0]
    assert [line.split(" | ")[2] for line in history.splitlines() if line.startswith("| ")][2:] == [
        "rollback",
        "gate",
        "gate",
    ]


def test_hostile_names_stay_text_in_the_html(registry: Registry) -> None:
    v1 = version(registry, 0.80, "FAIL", [HOSTILE], 0.5)
    registry.set_champion(v1, "manual-promote", HOSTILE)
    v2 = version(registry, 0.82, "PASS", [], 0.5)
    registry.set_champion(v2, "manual-promote", "see ![p](https://evil.example/p.png) and [x](javascript:alert(1))")
    markdown = overview_markdown(gather_overview(registry))
    page = overview_html(markdown, "demo <overview>")
    assert "<img src=x" not in page and "<title>demo &lt;overview&gt;</title>" in page
    # the name is one cell's text, pipe and all (a split cell would end the text at the pipe)
    shown = "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; | rule"
    assert f"<td>{shown}</td>" in page  # the reason, the history's last column
    decisions = page.split("Last 10 decisions")[1]
    assert f"<td>{shown}</td>\n<td>not tried</td>\n</tr>" in decisions  # the failing rule, then "reproduced"
    # Markdown in a reason stays text: no remote image in the "self-contained" page, no link (the Prefect UI
    # renders the same Markdown, with raw HTML allowed)
    assert "evil.example" in page and 'src="https://evil' not in page and "<a " not in page
    assert "](https://evil" not in markdown.replace("\\]", "")


def test_headstart_report_needs_only_the_registry(registry: Registry, tmp_path: Path, monkeypatch) -> None:
    v1 = version(registry, 0.80, "PASS", [], None)
    registry.set_champion(v1, "promote", "first model")
    version(registry, 0.70, "FAIL", ["gain accuracy"], 0.2)
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the registry is named on the command line
    uri = registry.storage.uri
    result = CliRunner().invoke(
        app, ["report", "--out", "site", "--set", f"registry.uri={uri}", "--set", "registry.model_name=demo"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "site" / "overview.json").read_text())
    assert [v["version"] for v in data["versions"]] == [m["version"] for m in registry.versions()]
    assert data["versions"][1]["failing_rules"] == ["gain accuracy"]
    page = (tmp_path / "site" / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2  # the metric chart and the health trend
    assert not list((tmp_path / "site").glob(".*partial"))


def test_charts_are_sized_to_read_and_mark_the_best_epoch() -> None:
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    matrix = (np.eye(10, dtype=int) * 40 + 1).tolist()
    width, height = Image.open(io.BytesIO(confusion_png(matrix, classes))).size
    assert 700 <= width <= 1400 and 600 <= height <= 1400  # readable on a 1400 px page without scaling down
    history = [{"epoch": e, "train_loss": 1 / e, "val_accuracy": a} for e, a in enumerate((0.5, 0.7, 0.7, 0.6), 1)]
    assert best_epoch(history)["epoch"] == 2  # the first of equals: the checkpoint training keeps
    assert Image.open(io.BytesIO(curves_png(history))).size[0] >= 800
    recalls = dict.fromkeys(classes, 0.5)
    assert Image.open(io.BytesIO(recall_bars_png(recalls, None))).format == "PNG"


def test_augmentation_draws_change_the_image_and_repeat_with_the_seed() -> None:
    augment = {
        "__version__": "2.0.8",
        "transform": {"__class_fullname__": "Affine", "p": 1.0, "rotate": [10, 30], "translate_percent": [0.1, 0.2]},
    }
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    [draws] = augmentation_draws([image], augment, variants=3)
    assert draws[0] is image and all(np.abs(d.astype(int) - image).mean() > 1 for d in draws[1:])
    [again] = augmentation_draws([image], augment, variants=3)
    assert all(np.array_equal(a, b) for a, b in zip(draws, again, strict=True))


def test_charts_take_edge_data_without_misleading() -> None:
    from headstart.library.reports.charts import overview_png

    history = [{"epoch": 1, "val_accuracy": float("nan")}, {"epoch": 2, "val_accuracy": 0.4}]
    assert best_epoch(history)["epoch"] == 2  # a NaN score is never the best epoch
    versions = [  # one registry time without its offset (written by hand, or by older code): read as UTC
        {"version": "a", "created": "2026-01-01T00:00:00", "accuracy": 0.7, "macro_f1": 0.6, "verdict": "PASS"},
        {"version": "b", "created": "2026-01-02T00:00:00+00:00", "accuracy": None, "macro_f1": None, "verdict": "FAIL"},
    ]
    aliases = [{"version": "a", "action": "promote", "at": "2026-01-01T00:01:00"}]
    assert Image.open(io.BytesIO(overview_png(versions, aliases, "macro_f1"))).size[0] >= 1000


def test_champion_recall_bars_leave_out_classes_the_champion_did_not_know() -> None:
    """Counted in the PNG: the challenger's bars in orange, the champion's in blue, one bar per known class."""
    from headstart.library.reports.charts import CHALLENGER_COLOUR, CHAMPION_COLOUR

    def bars(png: bytes, colour: str) -> int:
        rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
        target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        rows = (np.abs(rgb - target).sum(axis=2) < 30).sum(axis=1) > 10  # rows crossing a bar of that colour
        return int(np.sum(np.diff(rows.astype(int)) == 1))

    challenger = {"bag": 0.9, "coat": 0.8, "new-class": 0.7}
    png = recall_bars_png(challenger, {"bag": 0.85, "coat": 0.6})
    assert bars(png, CHALLENGER_COLOUR) == 3 and bars(png, CHAMPION_COLOUR) == 2 + 1  # + the legend's swatch


def test_webhook_url_is_checked_and_never_repeated(monkeypatch) -> None:
    import pytest

    from flows.notifications import WEBHOOK_ENV, webhook_url
    from headstart.ground.errors import ConfigError
    from headstart.ground.params import Params

    params = Params.model_validate({"notify": {"webhook_url": "http://hooks.internal/x"}})
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    assert webhook_url(params) == "http://hooks.internal/x" and webhook_url(Params()) is None
    monkeypatch.setenv(WEBHOOK_ENV, "https://hooks.example.com/T0/secret-token")
    assert webhook_url(params) == "https://hooks.example.com/T0/secret-token"  # the environment wins
    monkeypatch.setenv(WEBHOOK_ENV, "hooks.example.com/secret-token")
    with pytest.raises(ConfigError, match=r"\$HEADSTART_WEBHOOK_URL: not an http\(s\) URL") as refused:
        webhook_url(params)
    assert "secret-token" not in str(refused.value)


def test_a_carriage_return_in_a_reason_cannot_start_a_heading(registry: Registry) -> None:
    v1 = version(registry, 0.80, "PASS", [], None)
    registry.set_champion(v1, "manual-promote", "ok\r\r## Everything is fine\u2028- a list item")
    markdown = overview_markdown(gather_overview(registry))
    page = overview_html(markdown, "demo")
    assert not any(line.startswith(("## Everything", "- a list")) for line in markdown.splitlines())  # splits on \r
    assert "<h2>Everything is fine</h2>" not in page and "<li>" not in page
    assert "<td>ok  ## Everything is fine - a list item</td>" in page  # one cell's text
