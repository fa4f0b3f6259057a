"""Per-record validation cost with the hub's compiled validator, in µs per record.

Method: the person.residential-address schema and its catalogue examples; the
validator comes from ``onceonly.hub.registry.validation.validator_for`` (jsonschema-rs,
compiled once, cached by fingerprint), and each record goes through
``record_errors``, exactly as the exchange does after the owner answers. Each
example is validated ``--number`` times per repeat; the best of ``--repeat``
repeats is reported (the least disturbed by other work on a shared machine).
``is_valid`` is the floor of the hub's validator; the last column is the
reference, Python's ``jsonschema`` (what the hub used before), for comparison.

Run: ``python bench/validation.py [--number 20000] [--repeat 5]``.
"""

import argparse
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from onceonly.hub.registry.validation import fingerprint, record_errors, validator_for

ITEM = "person.residential-address"
CATALOGUE = Path(__file__).resolve().parent.parent / "schemas"


def best_us(check: Callable[[], object], *, number: int, repeat: int) -> float:
    """The best of ``repeat`` runs of ``number`` calls, in µs per call."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            check()
        best = min(best, time.perf_counter() - started)
    return best * 1e6 / number


def cases(document: dict[str, Any]) -> dict[str, Any]:
    """The catalogue's examples, and one invalid record (the error path)."""
    examples = {f"example {n}": record for n, record in enumerate(document["examples"], 1)}
    invalid = {**document["examples"][0], "postal_code": "ABC", "extra": 1}
    return {**examples, "invalid (2 errors)": invalid}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    document = json.loads((CATALOGUE / "items" / f"{ITEM}.json").read_text())
    schema = document["schema"]
    validator = validator_for(schema, fingerprint(schema))
    reference = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    print(f"{ITEM}: µs per record (best of {args.repeat} x {args.number})")
    print(f"{'record':22}{'record_errors':>15}{'is_valid':>10}{'jsonschema':>12}")
    for name, record in cases(document).items():
        timings = [
            best_us(check, number=args.number, repeat=args.repeat)
            for check in (
                functools.partial(record_errors, validator, record),
                functools.partial(validator.is_valid, record),
                functools.partial(reference.is_valid, record),
            )
        ]
        print(
            f"{name:22}"
            + "".join(f"{t:>{w}.2f}" for t, w in zip(timings, (15, 10, 12), strict=True))
        )


if __name__ == "__main__":
    main()
