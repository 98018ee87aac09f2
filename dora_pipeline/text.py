"""One way to show untrusted text in each medium the pipeline writes to.

Names, refs, survey ids, titles and file names come from catalogs, vendors and exports
that anyone may write. Whatever they hold, the medium that shows them stays intact:

- ``terminal``: control characters (C0, DEL, C1: escape sequences, bells) and the
  invisible direction and format characters (RLO and friends) are written out visibly
  (``\\x1b``, ``\\u202e``), long values end in an ellipsis; ``display_width`` pads
  tables by terminal columns (an emoji takes two).
- ``log_value`` (one untrusted value inside a log line) and ``VisibleControlsFilter``
  (the last line of defence on the CLI's log handler): the same, newlines included in
  a value, so no value forges a log line or drives the operator's terminal.
- ``markdown_cell``: a Markdown table cell (Dagster metadata): visible controls,
  every Markdown and HTML metacharacter backslash-escaped, newlines made spaces.
- ``chart_label``: matplotlib text: visible controls and shortened; the report draws
  with math text off, so ``$x^$`` is just text.
- HTML is escaped by the report's Jinja2 templates (autoescape); ``visible`` is applied
  to names there too, inside ``<bdi>``.
"""

from __future__ import annotations

import logging
import re
import unicodedata

ELLIPSIS = "…"

# Bidirectional controls (embeddings, overrides, isolates, marks) and other invisible
# format characters that change how the text around them reads.
_BIDI_AND_FORMAT = "\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb"
_CONTROLS = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_AND_FORMAT}]")
_CONTROLS_KEEP_LAYOUT = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI_AND_FORMAT}]")
# Every character that, inside a table cell, Markdown (CommonMark, GFM tables and
# strikethrough) or inline HTML gives a meaning to; line-start syntax (#, -, +, 1.)
# cannot occur inside a cell.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~&$])")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object) -> str:
    """``value`` as text with every control, bidi and invisible format character written out."""
    return _CONTROLS.sub(_escape, "" if value is None else str(value))


def shorten(text: str, width: int | None) -> str:
    """``text`` cut to at most ``width`` characters, the last one an ellipsis when cut."""
    if width is None or len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + ELLIPSIS


def terminal(value: object, width: int | None = 60) -> str:
    """An untrusted value for a terminal: controls visible, at most ``width`` characters."""
    return shorten(visible(value), width)


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide and full-width characters count two,
    combining marks none."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def pad(text: str, width: int) -> str:
    """``text`` left-aligned in ``width`` terminal columns."""
    return text + " " * max(width - display_width(text), 0)


def log_value(value: object, width: int | None = 200) -> str:
    """One untrusted value (a file name, a ref, a vendor's message) inside a log line."""
    return terminal(value, width)


def chart_label(value: object, width: int | None = 40) -> str:
    """Untrusted text drawn by matplotlib: controls visible (no "Glyph missing" warning
    printing raw bytes), shortened so a long name cannot push a chart apart."""
    return terminal(value, width)


class Markdown(str):
    """Markdown already made safe (by ``markdown_code`` or ``markdown_cell``): a table
    cell holding it is used as it is."""


def markdown_cell(value: object, width: int | None = 200) -> str:
    """An untrusted value as one cell of a Markdown table: it can neither end the cell
    (``|``, newline) nor format, link or inject HTML."""
    if isinstance(value, Markdown):
        return value
    text = shorten(visible("–" if value is None else value), width)
    return _MARKDOWN.sub(r"\\\1", text)


def markdown_code(value: object, width: int | None = 200) -> Markdown:
    """An untrusted value as an inline code span inside a table cell: fenced with more
    backticks than it holds (so it cannot close the span), pipes escaped (GFM splits the
    row before it reads code spans), controls and newlines visible."""
    text = shorten(visible(value), width).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Markdown(f"{fence}{pad}{text}{pad}{fence}")


def markdown_table(header: list[str] | tuple[str, ...], rows) -> str:
    """A GitHub-flavoured Markdown table; every cell, header included, goes through
    ``markdown_cell``."""
    lines = ["| " + " | ".join(markdown_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class VisibleControlsFilter(logging.Filter):
    """Makes control and bidi characters visible in every log message (newlines and tabs
    of the pipeline's own multi-line messages stay): whatever a value carries, it cannot
    clear the operator's screen, retitle the window or reverse the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = _CONTROLS_KEEP_LAYOUT.sub(_escape, message)
        if safe != message:
            record.msg, record.args = safe, None
        return True
