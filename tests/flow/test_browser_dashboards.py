"""The dashboards as an ops engineer sees them: a real retrain run's artifacts opened in the Prefect UI (v2) in
headless Chromium, checked from the DOM and from a saved screenshot."""

from __future__ import annotations

import io
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from headstart.cli.main import app

pytestmark = pytest.mark.slow  # trains models end to end (`pytest -m 'not slow'` skips them)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google on this closed network.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium. `.ci/run` installs it and requires this test; elsewhere it is skipped without it."""
    if not Path(CHROMIUM).is_file():
        if os.environ.get("HEADSTART_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install --no-install-recommends)")
        pytest.skip("Chromium is not installed (`.ci/run` installs it)")
    return CHROMIUM


@contextmanager
def browser_page(executable: str, profile: Path):
    """A page in headless Chromium with a fresh profile. Playwright's sync API keeps an event loop running in
    this thread, so open it only after the flow has run (Prefect would otherwise see a running loop)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=FLAGS, viewport=VIEWPORT
        )
        context.set_default_timeout(30_000)
        yield context.new_page()
        context.close()


def shows_text(png: bytes, box: dict) -> bool:
    """Whether a screenshot region holds dark glyphs on a light background (text, not an empty area)."""
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)
    top, left = int(box["y"]), int(box["x"])
    region = grey[top : top + int(box["height"]) + 1, left : left + int(box["width"]) + 1]
    return region.size > 0 and region.min() < 90 and region.max() > 200


def screenshot_showing(page, path: Path, locators: list, timeout: float = 15.0) -> bytes:
    """A screenshot once every locator's box shows text (the UI may paint a loading skeleton over content that is
    already in the DOM); the last one taken if that never happens, for the assertions to judge."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        png = page.screenshot(path=path)
        boxes = [locator.bounding_box() for locator in locators]
        if all(box and shows_text(png, box) for box in boxes) or time.monotonic() > deadline:
            return png
        page.wait_for_timeout(300)


def test_browser_shows_gate_decision_and_metrics(
    workspace: Path, prefect_server: str, fashion_idx_dir, chromium: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    imported = runner.invoke(app, ["data", "import", "fashion-mnist", "--per-class", "8", "--test-per-class", "4"])
    assert imported.exit_code == 0, imported.output
    ran = runner.invoke(app, ["run", "--set", "train.scenario=features", "--summary-json", "summary.json"])
    assert ran.exit_code == 0, ran.output
    summary = json.loads((workspace / "summary.json").read_text())

    reported = runner.invoke(app, ["report", "--out", str(tmp_path / "site")])  # from the registry alone
    assert reported.exit_code == 0, reported.output

    with browser_page(chromium, tmp_path / "profile") as page:
        check_dashboards(page, prefect_server.removesuffix("/api"), summary, tmp_path)
        page.goto((tmp_path / "site" / "index.html").as_uri())  # the static page: the same checks
        assert_overview_page(page.locator("body"), summary)


def check_dashboards(page, ui: str, summary: dict, tmp_path: Path) -> None:
    """The run's Artifacts tab, then the decision, metrics and image artifacts' own pages."""
    from playwright.sync_api import expect

    keys, verdict, accuracy = summary["artifacts"], summary["decision"]["verdict"], summary["metrics"]["accuracy"]
    page.goto(f"{ui}/v2/runs/flow-run/{summary['run_id']}")  # opens on the run's logs
    page.get_by_role("tab", name="Artifacts").click()
    for key in keys.values():
        expect(page.get_by_text(key, exact=True)).to_be_visible()  # a card per artifact

    page.get_by_text(keys["decision"], exact=True).click()
    rendered = page.get_by_test_id("markdown-display")  # not the hidden raw-Markdown editor
    headline = rendered.get_by_text(f"Decision: {verdict}")
    headline.wait_for()
    expect(rendered.get_by_role("cell", name="floor accuracy")).to_be_visible()
    metrics_line = rendered.get_by_text(f"Test accuracy {accuracy:.4f}")
    expect(metrics_line).to_be_visible()
    decision_png = screenshot_showing(page, tmp_path / "decision.png", [headline, metrics_line])
    for shown in (headline, metrics_line):
        box = shown.bounding_box()
        assert box and box["y"] + box["height"] <= VIEWPORT["height"], "not in the first screen"
        assert shows_text(decision_png, box), f"the screenshot shows no text where {shown} is"

    page.go_back()
    page.get_by_text(keys["metrics"], exact=True).click()
    overall = page.get_by_role("row").filter(has=page.get_by_role("cell", name="overall", exact=True))
    overall.wait_for()
    headers = page.get_by_role("columnheader").all_inner_texts()
    assert headers[:6] == ["class", "accuracy", "precision", "recall", "f1", "support"], headers  # per class too
    cells = overall.get_by_role("cell").all_inner_texts()
    assert cells[0] == "overall" and abs(float(cells[1]) - accuracy) < 1e-4, cells
    metrics_png = page.screenshot(path=tmp_path / "metrics.png")
    assert shows_text(metrics_png, overall.bounding_box())

    for what in ("confusion", "augmentation"):  # base64 PNGs inside Markdown render as images
        page.go_back()
        page.get_by_text(keys[what], exact=True).click()
        image = page.locator("img[src^='data:image/png']")
        image.wait_for()
        assert image.evaluate("i => i.complete && i.naturalWidth > 0"), f"the {what} image did not render"
        if what == "confusion":
            assert_legible_confusion(image, tmp_path)

    page.go_back()
    page.get_by_text(keys["overview"], exact=True).click()
    rendered = page.get_by_test_id("markdown-display")
    rendered.get_by_text("Last 10 decisions").wait_for()
    assert_overview_page(rendered, summary)


def assert_legible_confusion(image, tmp_path: Path) -> None:
    """On a 1400 px wide page the matrix is shown at (nearly) its own size, and the screenshot of it shows the
    class names in the label column left of the cells (dark glyphs on white, not an empty margin)."""
    natural, shown = image.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().width]")
    assert 700 <= natural <= VIEWPORT["width"] and shown >= 0.7 * natural, (natural, shown)
    png = image.screenshot(path=tmp_path / "confusion.png")
    width, height = Image.open(io.BytesIO(png)).size
    labels = {"x": 0, "y": int(height * 0.1), "width": int(width * 0.1), "height": int(height * 0.6)}
    assert shows_text(png, labels), "no class names left of the matrix in the screenshot"


def assert_overview_page(rendered, summary: dict) -> None:
    """Every chart image rendered; the decisions table lists the registry's versions, newest first, with their
    verdicts (the page is checked against the registry itself, not against what the run said)."""
    from headstart.ground.params import load_params
    from headstart.library.registry.registry import open_registry

    images = rendered.locator("img[src^='data:image/png']")
    assert images.count() >= 1
    assert all(images.nth(n).evaluate("i => i.complete && i.naturalWidth > 300") for n in range(images.count()))
    registry = open_registry(load_params(Path("params.yaml")).registry)
    expected = [(m["version"], m["decision"]) for m in reversed(registry.versions())]
    decisions = rendered.locator("table").nth(1)  # after the champion history
    rows = [row.locator("td").all_inner_texts() for row in decisions.locator("tbody tr").all()]
    assert [(cells[0], cells[2]) for cells in rows] == expected, rows
    assert summary["version"] in rendered.locator("table").nth(0).inner_text()  # it became the champion
