"""The dashboard's SVG bar charts (console.charts) and figures (console.dashboard): no
bar and no value for a withheld figure, text escaped, no inline style or script."""

import re
from types import SimpleNamespace

import pytest

from onceonly.hub.console import dashboard
from onceonly.hub.console.charts import Bar, bar_chart, bar_width, fitted, text_width
from onceonly.hub.reports.schemas import ConsumerFigures


@pytest.mark.parametrize(
    ("value", "largest", "width"),
    [(None, 10, 0), (0, 10, 0), (10, 10, 300), (5, 10, 150), (0.001, 10, 1), (3, 0, 0)],
)
def test_a_bar_is_proportional_and_a_small_figure_is_still_seen(
    value: float | None, largest: float, width: int
) -> None:
    assert bar_width(value, largest, room=300) == width


def test_a_chart_is_a_named_image_without_style_or_script() -> None:
    svg = str(
        bar_chart(
            [Bar("<b>Tax</b>", 4, "4"), Bar("Civil", None, "withheld")],
            title="T & U",
            chart_id="c1",
        )
    )
    assert svg.startswith("<svg ")
    assert 'role="img"' in svg
    assert 'aria-labelledby="c1"' in svg
    assert '<title id="c1">T &amp; U</title>' in svg
    assert "&lt;b&gt;Tax&lt;/b&gt;" in svg
    assert "style" not in svg
    assert "<script" not in svg
    assert len(re.findall("<rect ", svg)) == 1  # the withheld figure has no bar
    assert ">withheld</text>" in svg


def _consumer(**figures: int | None) -> ConsumerFigures:
    values = {"exchanges": None, "refused": None, "failed": None, "items": None, **figures}
    suppressed = [name for name, value in values.items() if value is None]
    return ConsumerFigures(department="tax", name="Tax", suppressed=suppressed, **values)


def test_a_withheld_figure_shows_neither_its_value_nor_a_bar() -> None:
    row = _consumer(exchanges=None, refused=0, failed=12, items=3)
    shown = dashboard.figure(row, "exchanges")
    assert (shown.value, shown.text, shown.withheld) == (None, dashboard.WITHHELD, True)
    assert dashboard.figure(row, "failed").text == "12"
    (bar,) = dashboard.bars([row], "exchanges", label="name", withheld="已隐去")
    assert (bar.value, bar.text) == (None, "已隐去")


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("error_rate", 0.125, "12.5 %"),
        ("minutes_saved", 90.0, "1.5 h"),
        ("exchanges_per_record", 2.0, "2.00"),
        ("exchanges", 12345, "12,345"),
    ],
)
def test_figures_are_formatted_for_reading(name: str, value: float, text: str) -> None:
    row = SimpleNamespace(suppressed=[], **{name: value})
    assert dashboard.figure(row, name).text == text


@pytest.mark.parametrize(
    ("label", "kept"),
    [
        ("Civil registry", "Civil registry"),
        (
            "Centre of Registers (Commercial and Land) of the Republic",
            "Centre of Registers (Comme…",
        ),
        ("国家社会福利与养老保险管理中心（地方分局）", "国家社会福利与养老保险管理中…"),  # noqa: RUF001
    ],
)
def test_a_long_name_is_shortened_by_its_drawn_width_not_its_length(label: str, kept: str) -> None:
    assert fitted(label, room=212) == kept
    assert text_width(kept) <= 212


def test_a_wide_script_counts_wider_than_latin_letters() -> None:
    assert text_width("数据所有部门") > text_width("Owners")


def test_a_bar_carries_its_whole_name_where_its_label_is_shortened() -> None:
    name = "Centre of Registers (Commercial and Land) of the Republic"
    svg = str(bar_chart([Bar(name, 4, "4")], title="T", chart_id="c1"))
    assert f"<title>{name}: 4</title>" in svg
    assert ">Centre of Registers (Comme…</text>" in svg
