"""What each compatibility mode checks, read from its name (registry.compat.MODE_CHECKS):
the directions it compares in, and whether with every earlier version or the latest."""

from typing import get_args

import pytest

from onceonly.hub.registry.compat import MODE_CHECKS, Incompatible, Mode, check_compatible
from onceonly.hub.registry.schemas import ItemDocument

BOTH = {"backward", "forward"}
EXPECTED = [
    ("NONE", set(), False),
    ("BACKWARD", {"backward"}, False),
    ("BACKWARD_TRANSITIVE", {"backward"}, True),
    ("FORWARD", {"forward"}, False),
    ("FORWARD_TRANSITIVE", {"forward"}, True),
    ("FULL", BOTH, False),
    ("FULL_TRANSITIVE", BOTH, True),
]


@pytest.mark.parametrize(("mode", "directions", "transitive"), EXPECTED)
def test_each_mode_checks_what_its_name_says(
    mode: Mode, directions: set[str], transitive: bool
) -> None:
    assert MODE_CHECKS[mode] == (frozenset(directions), transitive)


def test_every_mode_an_item_document_takes_is_a_mode_the_checker_knows() -> None:
    documented = ItemDocument.model_fields["compatibility"].annotation
    assert set(get_args(documented)) == set(MODE_CHECKS) == {mode for mode, *_ in EXPECTED}


OPEN: dict[str, object] = {}
CLOSED = {"type": "object", "properties": {"a": {}}, "additionalProperties": False}
# The new version is as compatible with version 2 as can be (the same schema), and not
# with version 1, in one direction: only a transitive mode that checks it refuses.
BACKWARD_BREAK = ([OPEN, CLOSED], CLOSED)  # data of version 1 may have "b"
FORWARD_BREAK = ([CLOSED, OPEN], OPEN)  # new data may have "b", version 1 refuses it


@pytest.mark.parametrize(("mode", "directions", "transitive"), EXPECTED)
@pytest.mark.parametrize(
    ("direction", "history"),
    [("backward", BACKWARD_BREAK), ("forward", FORWARD_BREAK)],
    ids=["backward", "forward"],
)
def test_only_a_transitive_mode_compares_with_versions_before_the_latest(
    mode: Mode,
    directions: set[str],
    transitive: bool,
    direction: str,
    history: tuple[list[object], object],
) -> None:
    earlier, new = history
    if direction in directions and transitive:
        with pytest.raises(Incompatible, match="with version 1"):
            check_compatible(new, earlier, mode)
    else:
        check_compatible(new, earlier, mode)
