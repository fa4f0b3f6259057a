"""Field-level minimization: a consumer receives only the fields its grant names. Pure."""

from typing import Any


def minimize(record: dict[str, Any], allowed: list[str] | None) -> dict[str, Any]:
    """The record with only the top-level fields in ``allowed`` (``None``: all of them)."""
    if allowed is None:
        return dict(record)
    keep = set(allowed)
    return {name: value for name, value in record.items() if name in keep}
