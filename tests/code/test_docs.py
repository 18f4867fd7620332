"""The docs stay true to the code: the command and params references are generated from it and fail here when
stale (as dvc.yaml does), every link in the README resolves, and the pages carry no tracker history."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from headstart.ground.params_reference import SHIPPED_PARAMS, reference_markdown, yaml_comments

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_command_reference_is_generated_from_the_app(tmp_path: Path) -> None:
    typer = Path(sys.executable).parent / "typer"
    args = ["headstart.cli.main", "utils", "docs", "--name", "headstart", "--title", "Command reference"]
    subprocess.run([str(typer), *args, "--output", str(tmp_path / "cli.md")], cwd=REPO, check=True, capture_output=True)
    generated = (tmp_path / "cli.md").read_text()
    assert "## `headstart init`" in generated and "`--test-data <path>`" in generated  # the real app, read
    assert (DOCS / "cli.md").read_text() == generated, "docs/cli.md is stale: make docs"


def test_the_params_reference_is_generated_from_the_model_and_params_yaml() -> None:
    generated = reference_markdown(yaml_comments(SHIPPED_PARAMS.read_text()))
    assert "| `train.distributed.nproc` |" in generated and "| `registry.model_name` |" in generated
    assert (DOCS / "params.md").read_text() == generated, "docs/params.md is stale: make docs"


def test_a_key_without_a_description_stops_the_reference() -> None:
    text = SHIPPED_PARAMS.read_text()
    stripped = re.sub(r"(\n  min_per_class: 2) +#[^\n]*", r"\1", text)
    assert stripped != text
    with pytest.raises(ValueError, match=r"validate\.min_per_class"):
        reference_markdown(yaml_comments(stripped))


def test_a_comment_spanning_lines_is_one_description() -> None:
    comments = yaml_comments(SHIPPED_PARAMS.read_text())
    assert comments["train.deterministic"].endswith("(costs speed there; the CPU repeats a run bit for bit without it)")
    assert "Augmentations" not in comments["split.test_fraction"]  # the next section's preface is not this key's


def anchors_of(page: Path) -> set[str]:
    """The heading ids of a page, as mkdocs (Python-Markdown's toc) and GitHub make them for plain headings."""
    return {slugify(h.strip().replace("`", ""), "-") for h in re.findall(r"^#{1,6} (.+)$", page.read_text(), re.M)}


def test_every_link_in_the_readme_resolves() -> None:
    links = LINK.findall((REPO / "README.md").read_text())
    assert len(links) >= 10
    for link in links:
        if "://" in link:
            continue
        target, _, anchor = link.partition("#")
        page = REPO / target
        assert page.is_file(), f"README links to {target}, which does not exist"
        assert not anchor or anchor in anchors_of(page), f"README links to {link}: no such heading"


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_a_page_carries_no_tracker_history(page: str) -> None:
    text = (DOCS / page).read_text()
    assert not re.search(r"\b[Ii]ssues? #?\d+(?![\d.])|\(#\d+\)", text), f"{page} cites an issue tracker"


def test_every_p_figure_used_is_defined_in_the_benchmarks_table() -> None:
    table = (DOCS / "benchmarks.md").read_text().split("\n## ")[0]
    defined = set(re.findall(r"^\| (P\d+) \|", table, re.M))
    assert defined == {f"P{n}" for n in range(1, len(defined) + 1)}  # numbered without gaps
    used = {m for p in [REPO / "README.md", *DOCS.glob("*.md")] for m in re.findall(r"\bP\d+\b", p.read_text())}
    assert used <= defined, f"used but not defined: {sorted(used - defined)}"


def test_the_readme_fits_on_a_few_screens() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 180  # the reference lives in docs/
