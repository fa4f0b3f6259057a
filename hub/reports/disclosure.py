"""Disclosure control for the efficiency report: which counts are withheld. Pure.

The report must never single out a person (issue 14), so it withholds any count that
could tell fewer than ``threshold`` people's exchanges apart, whether published
directly or worked out from other published figures:

1. **Primary:** a published count from 1 to ``threshold`` - 1 is withheld (zero counts
   nobody and is shown).
2. **Complements:** a count whose complement in its row is small is withheld too
   (requests decided on time, when the late ones are few: decided - on time).
3. **Linked sums:** where a shown count is the sum of others (an owner of its items;
   the total of the items, of the owners, of the consumers; each with what no row
   shows, such as refusals naming no registered item), the withheld and unpublished
   parts must add up to 0 or to at least 2 * ``threshold`` - 1, so that no part can be
   worked out (nor pinned down from the rules themselves: one withheld count of 1 to
   4 beside a withheld one of at least 5 spans the whole range only from that sum
   on). Otherwise the smallest shown part is withheld as well (or, with none left, the
   sum), again and again until every sum holds.

What is worked out from counts (rates, percentiles, minutes) is decided by the
report's builder from the counts that remain shown (onceonly.hub.reports.service).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Cell = tuple[str, str]  # (row key, figure)


@dataclass(frozen=True)
class Relation:
    """``parent`` = Σ ``children`` + ``rest`` for one figure (``rest``: what no row shows)."""

    figure: str
    parent: str
    children: tuple[str, ...]
    rest: int = 0


def small(value: int, threshold: int) -> bool:
    return 0 < value < threshold


def withheld(
    counts: Mapping[Cell, int],
    *,
    complements: Mapping[Cell, int],
    relations: Iterable[Relation],
    threshold: int,
) -> set[Cell]:
    """The cells of ``counts`` to withhold. ``complements``: for a cell, the count that
    its row's other published figure minus it gives away."""
    hidden = {cell for cell, value in counts.items() if small(value, threshold)}
    hidden |= {
        cell for cell, other in complements.items() if cell in counts and small(other, threshold)
    }
    linked = list(relations)
    enough = 2 * threshold - 1
    changed = True
    while changed:
        changed = False
        for relation in linked:
            parent = (relation.parent, relation.figure)
            if parent in hidden or parent not in counts:
                continue
            cells = [(child, relation.figure) for child in relation.children]
            unknown = relation.rest + sum(counts[c] for c in cells if c in hidden)
            if not 0 < unknown < enough:
                continue
            shown = [(counts[c], c) for c in cells if c not in hidden and counts[c] > 0]
            hidden.add(min(shown)[1] if shown else parent)
            changed = True
    return hidden
