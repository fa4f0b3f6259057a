"""Property paths: how a source's columns (SQL) or answer fields (REST) become a record.

A mapping is ``{property path: where}``. A path is dotted (``address.city`` builds
``{"address": {"city": ...}}``); with ``many``, one segment may end in ``[]``
(``relatives[].relation``): each row of the source then adds one element to that
array. ``where`` is a column name or a JSON pointer; the source reads it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

__all__ = ["MISSING", "ManyMapping", "assemble", "check_paths", "place", "split_many"]

Record = dict[str, Any]

MISSING: Final = object()
"""What a reader returns when the column or pointer has nothing."""

_SEGMENT = re.compile(r"[A-Za-z0-9_$@-]+(\[\])?")


def check_paths(paths: Iterable[str], *, many: bool) -> None:
    """Refuse malformed paths, a path that is the prefix of another, and ``[]``
    except, with ``many``, on exactly one array property.

    :raises ValueError: the message names the offending path.
    """
    paths = list(paths)
    for path in paths:
        if not all(_SEGMENT.fullmatch(segment) for segment in path.split(".")):
            raise ValueError(f"{path!r} is not a property path (dotted names)")
        if path.count("[]") > 1 or path.endswith("[]"):
            raise ValueError(f"{path!r}: '[]' marks one array of objects, as in 'relatives[].name'")
    plain = [path.replace("[]", "") for path in paths]
    for path in plain:
        if any(other.startswith(path + ".") for other in plain):
            raise ValueError(f"{path!r} is both a value and an object")
    arrays = {path.split("[]")[0] for path in paths if "[]" in path}
    if many and len(arrays) != 1:
        raise ValueError("with many = true, exactly one array property is mapped ('name[].field')")
    if not many and arrays:
        raise ValueError(f"{sorted(arrays)[0]!r}[]: an array of rows needs many = true")


def place(record: Record, path: str, value: object) -> None:
    """Set ``value`` at the dotted ``path``, making the objects on the way.

    >>> record = {}
    >>> place(record, "address.city", "Tartu")
    >>> record
    {'address': {'city': 'Tartu'}}
    """
    *parents, name = path.split(".")
    for parent in parents:
        record = record.setdefault(parent, {})
    record[name] = value


def assemble(
    mapping: Mapping[str, str], read: Callable[[str], object], *, keep_nulls: bool
) -> Record:
    """The record that ``mapping`` makes of what ``read`` finds.

    A property whose column or pointer is missing is left out; so is a null one,
    unless ``keep_nulls``.
    """
    record: Record = {}
    for path, where in mapping.items():
        value = read(where)
        if value is MISSING or (value is None and not keep_nulls):
            continue
        place(record, path, value)
    return record


class ManyMapping:
    """A mapping split for ``many``: properties read from the first row, and the
    properties of each array element, read from every row."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.array, self.top, self.element = split_many(mapping)

    def assemble(
        self, rows: Sequence[Callable[[str], object]], *, keep_nulls: bool
    ) -> Record | None:
        """``None`` for no rows. A row whose element properties are all null (an
        outer join that found nothing) adds no element."""
        if not rows:
            return None
        record = assemble(self.top, rows[0], keep_nulls=keep_nulls)
        elements = [assemble(self.element, row, keep_nulls=keep_nulls) for row in rows]
        place(record, self.array, [element for element in elements if _has_value(element)])
        return record


def split_many(mapping: Mapping[str, str]) -> tuple[str, dict[str, str], dict[str, str]]:
    """``(array path, top-level mapping, element mapping)`` of a checked many-mapping."""
    top: dict[str, str] = {}
    element: dict[str, str] = {}
    array = ""
    for path, where in mapping.items():
        if "[]" in path:
            array, _, inner = path.partition("[].")
            element[inner] = where
        else:
            top[path] = where
    return array, top, element


def _has_value(element: Record) -> bool:
    return any(
        _has_value(value) if isinstance(value, dict) else value is not None
        for value in element.values()
    )
