"""Class names are text in every chart (issue 27, item 4): a name with `$` raised in matplotlib's mathtext at the
report step (every run with such a class failed there) or rendered as garbled math."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.library.reports import charts

NAMES = ["$^$", "price $5-$10", r"\frac{a}{b}", "b"]


def test_names_with_dollars_are_drawn_as_text_in_every_chart_that_shows_them() -> None:
    drawn = {
        "confusion": lambda: charts.confusion_png([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], NAMES),
        "recall bars": lambda: charts.recall_bars_png(dict.fromkeys(NAMES, 0.5), dict.fromkeys(NAMES, 0.4)),
        "tiles": lambda: charts.labelled_tiles_png([np.zeros((8, 8, 3), np.uint8)] * 4, NAMES),
    }
    for what, draw in drawn.items():
        assert draw().startswith(b"\x89PNG"), what


def test_without_the_guard_mathtext_would_have_raised() -> None:
    with pytest.raises(ValueError):  # the defect, reproduced: so the test above can fail
        charts.confusion_png.__wrapped__([[1, 0], [0, 1]], ["$^$", "b"])
