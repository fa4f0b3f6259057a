"""Bar charts as inline SVG, drawn by the hub (no script, no CDN), without I/O.

The console's Content-Security-Policy allows no inline style, so the chart is drawn
with SVG presentation attributes only (``fill``, ``font-size``...), which are not
styles. Every chart is an image with a name (``role="img"``, ``<title>``) and is
always shown beside a table of the same figures, its text alternative (WCAG 1.1.1).
A figure that is not shown (withheld, or nothing to work it out from) gets no bar:
only its text, the same as in the table.

A bar's name is drawn right-aligned against the bars, in the room left of them: a name
too wide for it is shortened (with "…") by an estimate of its drawn width, which counts
a Chinese character as a whole em and a Latin letter as about half of one, so that no
script loses its first letters off the chart's edge. The whole name is the row's
``<title>`` (a tooltip) and in the table beside the chart.
"""

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from markupsafe import Markup, escape

WIDTH: Final = 640
LABEL_WIDTH: Final = 220  # the bars' names, on the left
VALUE_WIDTH: Final = 110  # the figures, right of the bars
ROW: Final = 28
BAR: Final = 18
TOP: Final = 8
FONT_SIZE: Final = 14
LABEL_GAP: Final = 8  # between a name and its bar
BAR_FILL: Final = "#1d70b8"  # GOV.UK blue: 5.2:1 against white
TEXT_FILL: Final = "#0b0c0c"
MUTED_FILL: Final = "#484949"  # 9:1 against white
FONT: Final = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', sans-serif"


@dataclass(frozen=True)
class Bar:
    """One bar: its name, its value (None: no bar) and the figure as the table shows it."""

    label: str
    value: float | None
    text: str


# Widths in em of a sans-serif face's characters, rounded up (system fonts differ):
# East Asian wide and full-width characters, then Latin letters by their shape.
_WIDE_EM: Final = 1.0
_NARROW: Final = frozenset("iljftrI.,:;'|!() []")
_BROAD: Final = frozenset("mwMW@%")
_ELLIPSIS: Final = "…"


def _em(character: str) -> float:
    if unicodedata.east_asian_width(character) in ("W", "F"):
        return _WIDE_EM
    if character in _NARROW:
        return 0.36
    if character in _BROAD:
        return 0.95
    if character.isupper():
        return 0.75
    return 0.6


def text_width(text: str, *, size: float = FONT_SIZE) -> float:
    """An estimate of ``text``'s drawn width in pixels at font ``size``, on the wide side."""
    return size * sum(_em(character) for character in text)


def fitted(label: str, *, room: float) -> str:
    """``label`` as it fits in ``room`` pixels: whole, or its longest beginning that fits
    with "…" after it (by :func:`text_width`)."""
    if text_width(label) <= room:
        return label
    kept = label
    while kept and text_width(kept.rstrip() + _ELLIPSIS) > room:
        kept = kept[:-1]
    return kept.rstrip() + _ELLIPSIS


def bar_width(value: float | None, largest: float, *, room: int) -> int:
    """The bar's length in pixels: proportional to the largest value, at least 1 pixel
    for a value above 0 (so that a small figure is not drawn as nothing)."""
    if value is None or value <= 0 or largest <= 0:
        return 0
    return max(1, round(room * value / largest))


def _row(bar: Bar, *, y: int, largest: float, room: int) -> str:
    width = bar_width(bar.value, largest, room=room)
    middle = y + BAR // 2
    parts = [
        f"<g><title>{escape(bar.label)}: {escape(bar.text)}</title>"
        f'<text x="{LABEL_WIDTH - LABEL_GAP}" y="{middle}" text-anchor="end"'
        f' dominant-baseline="middle" fill="{TEXT_FILL}">'
        f"{escape(fitted(bar.label, room=LABEL_WIDTH - LABEL_GAP))}</text>"
    ]
    if width:
        parts.append(
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{width}" height="{BAR}" fill="{BAR_FILL}"/>'
        )
    fill = TEXT_FILL if bar.value is not None else MUTED_FILL
    parts.append(
        f'<text x="{LABEL_WIDTH + width + 6}" y="{middle}" dominant-baseline="middle"'
        f' fill="{fill}">{escape(bar.text)}</text></g>'
    )
    return "".join(parts)


def bar_chart(bars: Sequence[Bar], *, title: str, chart_id: str) -> Markup:
    """A horizontal bar chart named ``title`` (``chart_id`` names its title element)."""
    room = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    largest = max((bar.value for bar in bars if bar.value is not None), default=0.0)
    height = TOP * 2 + ROW * max(len(bars), 1)
    rows = "".join(
        _row(bar, y=TOP + i * ROW + (ROW - BAR) // 2, largest=largest, room=room)
        for i, bar in enumerate(bars)
    )
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="app-chart" role="img"'
        f' aria-labelledby="{escape(chart_id)}" viewBox="0 0 {WIDTH} {height}"'
        f' width="100%" preserveAspectRatio="xMinYMin meet"'
        f' font-family="{escape(FONT)}" font-size="{FONT_SIZE}">'
        f'<title id="{escape(chart_id)}">{escape(title)}</title>{rows}</svg>'
    )
