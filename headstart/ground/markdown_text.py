"""User text inside Markdown: names, versions, reasons and values shown as literal text, one table cell each.

Every Markdown renderer here (the overview, the model card, the decision table, the Prefect artifacts, the static
report) puts strings from outside — class names, alias reasons, rule values — into tables and sentences.
"""

from __future__ import annotations

import html
import re

MARKDOWN_SPECIAL = set("\\`*_{}[]()!|~$")  # . - + # only act at a line's start, never inside a cell
LINE_BREAKS = re.compile(r"[\r\n\v\f\x85\u2028\u2029]")  # CommonMark ends a line at \r too: a space each
CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")  # no meaning as text: shown as U+FFFD


def plain(text: object) -> str:
    """``text`` as literal Markdown text: line breaks as spaces, ``<``, ``>``, ``&`` as entities (the Prefect UI
    renders raw HTML), Markdown punctuation backslash-escaped (no links, images, emphasis, math or table cells
    from a name or reason), leading and trailing whitespace as entities (kept, not trimmed)."""
    flat = CONTROLS.sub("\ufffd", LINE_BREAKS.sub(" ", str(text)))
    core = flat.strip()
    lead, tail = flat[: len(flat) - len(flat.lstrip())], flat[len(flat.rstrip()) :]
    escaped = "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in html.escape(core, quote=False))
    return _entities(lead) + escaped + _entities(tail)


def _entities(blank: str) -> str:
    """Whitespace as numeric entities: a table cell's edges are trimmed, ``0`` and ``0\u00a0`` stay two names."""
    return "".join(f"&#{ord(c)};" for c in blank)
