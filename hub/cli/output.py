"""How a command shows the data it prints: ``--output json|csv|table`` (decision 0025).

- ``json``: the answer exactly as the hub gave it, indented. The default when standard
  output is not a terminal, so that scripts reading a command's JSON keep working.
- ``table``: the default on a terminal. A list is one row per element under a header
  of the :class:`Shape`'s columns; one object is a column of ``member  value`` lines.
  Times are ISO 8601 in the local time zone with its offset, to the second; a time
  the hub counts in seconds since the epoch is shown the same way; ``-`` is nothing.
- ``csv``: one header line, then a line per row (RFC 4180), every member of the rows:
  an object member's own members become ``member.name`` columns, lists and deeper
  objects are JSON in their cell, times are RFC 3339 as the hub wrote them (UTC). A
  text cell (or column name) that a spreadsheet would run as a formula (``=``, ``+``,
  ``-``, ``@``, tab, CR first) starts with an apostrophe, as in the hub's own CSV
  exports (``kit.spreadsheet``).

Standard output carries only data; what a person needs besides (more pages to ask
for, nothing found) goes to standard error in table form.
"""

import argparse
import csv
import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from onceonly.hub.kit.spreadsheet import neutralize_formula

FORMS = ("json", "csv", "table")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")
Cell = Callable[[Any], str]


@dataclass(frozen=True)
class Shape:
    """How an answer becomes rows.

    ``rows``: the member that holds the rows (None: the answer itself, a list or one
    object); ``columns``: what a table shows, dotted paths into a row (empty: every
    member); ``epoch``: members counted in seconds since the epoch; ``cells``: how a
    member is written in a table, when the general rule does not read well; ``more``:
    the member that names the next page, and the option that asks for it;
    ``scalar``: the column of rows that are plain values (a list of ids); ``what``:
    what the rows are, to say when there are none (default: ``rows``).
    """

    rows: str | None = None
    columns: tuple[str, ...] = ()
    epoch: frozenset[str] = frozenset()
    cells: dict[str, Cell] = field(default_factory=dict)
    more: tuple[str, str] | None = None
    scalar: str = "value"
    what: str | None = None


def add_output_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--output",
        "-o",
        choices=FORMS,
        help="json, csv or table (default: table on a terminal, json otherwise)",
    )
    return parser


def form_of(args: argparse.Namespace, stream: TextIO | None = None) -> str:
    """``--output``, else table when ``stream`` (standard output) is a terminal, else json."""
    chosen = getattr(args, "output", None)
    if chosen:
        return str(chosen)
    return "table" if (stream or sys.stdout).isatty() else "json"


def show(answer: Any, *, form: str, shape: Shape | None = None, out: TextIO | None = None) -> None:
    """Write ``answer`` to ``out`` (standard output) in ``form``."""
    out = out or sys.stdout
    shape = shape or Shape()
    if form == "json":
        out.write(json.dumps(answer, indent=2, ensure_ascii=False) + "\n")
        return
    rows = _rows_of(answer, shape)
    if form == "csv":
        _write_csv(rows, shape, out)
    elif isinstance(rows, dict):
        _write_record(rows, shape, out)
    else:
        _write_table(rows, shape, out)
        _say_more(answer, shape)


def _rows_of(answer: Any, shape: Shape) -> Any:
    if shape.rows is not None and isinstance(answer, dict):
        return answer.get(shape.rows, [])
    return answer


def _say_more(answer: Any, shape: Shape) -> None:
    if shape.more is None or not isinstance(answer, dict):
        return
    member, option = shape.more
    if answer.get(member):
        print(f"more: ask again with {option} {answer[member]}", file=sys.stderr)


def flatten(row: Any, shape: Shape) -> dict[str, Any]:
    """A row's members; an object member's members as ``member.name`` (one level)."""
    if not isinstance(row, dict):
        return {shape.scalar: row}
    flat: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, dict) and value:
            flat.update({f"{name}.{inner}": v for inner, v in value.items()})
        else:
            flat[name] = value
    return flat


def _columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every member of the rows, in the order they first appear."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _write_csv(rows: Any, shape: Shape, out: TextIO) -> None:
    flat = [flatten(row, shape) for row in ([rows] if isinstance(rows, dict) else rows)]
    # RFC 4180 CRLF: a CR or LF inside a cell is then quoted, never a row of its own
    writer = csv.writer(out, lineterminator="\r\n")
    # no rows: the columns a table of them shows, else nothing (an empty line is no header)
    columns = _columns(flat) or list(shape.columns)
    if not columns:
        return
    writer.writerow([neutralize_formula(column) for column in columns])  # names come from data
    for row in flat:
        writer.writerow([_csv_cell(row.get(c), epoch=c in shape.epoch) for c in columns])


def _csv_cell(value: Any, *, epoch: bool) -> str:
    if value is None:
        return ""
    if epoch and isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # text from callers: never a formula (a number is a number)
        return neutralize_formula(value)
    return str(value)


def _write_table(rows: list[Any], shape: Shape, out: TextIO) -> None:
    if not rows:
        print(f"no {shape.what or shape.rows or 'rows'}", file=sys.stderr)
        return
    flat = [flatten(row, shape) for row in rows]
    columns = list(shape.columns) or _columns(flat)
    lines = [[c.rsplit(".", 1)[-1].upper() for c in columns]]
    lines += [[_table_cell(row.get(c), c, shape) for c in columns] for row in flat]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    for line in lines:
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        out.write("  ".join(padded).rstrip() + "\n")


def _write_record(record: dict[str, Any], shape: Shape, out: TextIO) -> None:
    flat = flatten(record, shape)
    names = [c for c in shape.columns if c in flat] if shape.columns else list(flat)
    width = max((len(name) for name in names), default=0)
    for name in names:
        out.write(f"{name.ljust(width)}  {_table_cell(flat[name], name, shape)}".rstrip() + "\n")


def _table_cell(value: Any, name: str, shape: Shape) -> str:
    if name in shape.cells and value is not None:
        return shape.cells[name](value)
    if name in shape.epoch and isinstance(value, int | float):
        return local_time(datetime.fromtimestamp(value, UTC))
    return human(value)


def human(value: Any) -> str:
    """A value as a person reads it in a table cell."""
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return _time_or_text(value)
    if isinstance(value, list):
        return ", ".join(human(element) for element in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={human(v)}" for k, v in value.items() if v is not None)
    return str(value)


def _time_or_text(text: str) -> str:
    if not _TIME.match(text):
        return " ".join(text.split())  # a cell is one line
    try:
        return local_time(datetime.fromisoformat(text))
    except ValueError:
        return text


def local_time(moment: datetime) -> str:
    """ISO 8601 in the local time zone (``$TZ``), to the second, with its offset."""
    local = moment.astimezone()
    return local.replace(microsecond=0).isoformat()


def role_cell(roles: Any) -> str:
    """People's roles as ``--role`` takes them: ``administrator``, ``steward:tax``."""
    return ", ".join(
        f"{r['role']}:{r['department']}" if r.get("department") else str(r["role"])
        for r in roles
        if isinstance(r, dict)
    )
