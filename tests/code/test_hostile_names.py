"""A hostile-names fuzz (issue 27): class names, versions and reasons drawn from the characters that mean something
to a renderer — `$ \\ [ ] < > & | * _ # \\r \\n` and backticks, bidi controls, very long — go through every renderer
as text: one Markdown table cell each (the overview, the model card, the decision table), rich's console, the
charts. Properties, not examples: hypothesis draws the names."""

from __future__ import annotations

import html
import io
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from headstart.cli.output import text_console
from headstart.ground.markdown_text import plain
from headstart.library.evaluation.gate import Decision, RuleResult
from headstart.library.reports import charts
from headstart.library.reports.model_card import render_model_card

MEANINGFUL = "$\\[]<>&|*_#`~!(){}\r\n\t\u202e\u2066\u0085\u2028 -+.:=\"'"
names = st.text(alphabet=st.sampled_from(MEANINGFUL) | st.characters(codec="utf-8"), min_size=1, max_size=80).filter(
    lambda s: s.strip() and "\x00" not in s
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RENDER = MarkdownIt("commonmark", {"html": False}).enable("table")
LINE_BREAK = re.compile(r"[\r\n\v\f\x85\u2028\u2029]")


def cells(markdown: str) -> list[list[str]]:
    """The table rows of rendered Markdown, each a list of its cells' text (entities decoded)."""
    page = RENDER.render(markdown)
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)
    return [[html.unescape(c) for c in re.findall(r"<t[dh]>(.*?)</t[dh]>", row, re.S)] for row in rows]


def as_text(name: str) -> str:
    """What a cell shows for ``name``: the name, its line breaks as spaces, other control characters as U+FFFD."""
    return re.sub(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]", "\ufffd", LINE_BREAK.sub(" ", name))


@FAST
@given(names)
def test_a_name_is_one_cell_of_its_own_text_in_markdown_tables(name: str) -> None:
    rows = cells(f"| a | b |\n| --- | --- |\n| {plain(name)} | x |\n")
    assert rows[-1] == [as_text(name), "x"]


@FAST
@given(st.lists(names, min_size=2, max_size=4, unique=True))
def test_class_names_stay_text_in_the_model_card_and_the_decision(classes: list[str]) -> None:
    per_class = {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 3} for c in classes}
    metrics = {"accuracy": 0.5, "macro_f1": 0.5, "test_images": 3 * len(classes), "per_class": per_class}
    config = {"backbone": "b", "scenario": "finetune", "classes": classes, "head": {}, "freeze_stages": 0,
              "bn": "trained", "preprocessing": {"input_size": 32, "mean": [0], "std": [1]}, "lineage": {}}  # fmt: skip
    decision = Decision("FAIL", [RuleResult(f"recall drop {classes[0]}", classes[1], "<= 0.05", "FAIL")])
    card = render_model_card(config, metrics, decision)
    rows = cells(card)
    shown = [row[0] for row in rows if len(row) == 5][1:]  # the per-class table, its header row left out
    assert shown == [as_text(c) for c in classes]
    decided = [row for row in rows if len(row) == 4][-1]
    assert decided == [as_text(f"recall drop {classes[0]}"), as_text(classes[1]), "<= 0.05", "FAIL"]


@FAST
@given(names.filter(str.isprintable))  # rich drops control codes itself; markup was what broke it
def test_rich_prints_a_name_as_it_is(name: str) -> None:
    console = text_console()
    console.file = io.StringIO()
    console.print(name, soft_wrap=True, end="")
    assert console.file.getvalue() == name


@settings(max_examples=15, deadline=None)
@given(st.lists(names, min_size=2, max_size=3, unique=True))
def test_charts_draw_any_class_name(classes: list[str]) -> None:
    n = len(classes)
    png = charts.confusion_png([[1 if i == j else 0 for j in range(n)] for i in range(n)], classes)
    assert png.startswith(b"\x89PNG")
