"""Schemathesis against a real hub on loopback: every operation of /openapi.json, with
bodies, as the break-glass administrator (so authorized paths run too), with valid and
invalid inputs. No answer may be a 5xx, and every answer must keep the document: a
declared status, a declared content type, a body that matches the declared schema.

Bounded for CI: a fixed seed (derandomize), a few examples per operation and mode, no
shrinking. Schemathesis' own pytest plugin is not used (it does not run on this
pytest): the operations are driven through Hypothesis here. Schemathesis is loaded by
schemathesis_tool (why it is not in the test extra is said there).
"""

import importlib
import time
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings

from tests.hub.openapi import schemathesis_tool
from tests.hub_testing import RunningHub

schemathesis = schemathesis_tool.load()
_openapi_checks = importlib.import_module("schemathesis.specs.openapi.checks")
CHECKS = [
    schemathesis.checks.not_a_server_error,
    _openapi_checks.status_code_conformance,
    _openapi_checks.content_type_conformance,
    _openapi_checks.response_schema_conformance,
]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
EXAMPLES = 5
BUDGET_SECONDS = 120  # about 30 s on a quiet 2-core machine


def _failure(operation: Any, mode: Any, headers: dict[str, str]) -> str | None:
    """The first broken check of ``operation`` in ``mode``, or None."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # a group of the checks' failures, or a transport error
        return f"{operation.label} ({mode.value}): {str(error)[:1500]}"
    return None


def _modes(operation: Any) -> tuple[Any, ...]:
    """Invalid inputs only where there are inputs: parameters or a body."""
    raw = operation.definition.raw
    return MODES if raw.get("parameters") or raw.get("requestBody") else MODES[:1]


def test_every_operation_keeps_the_document(hub: RunningHub) -> None:
    schema = schemathesis.openapi.from_url(f"{hub.url}/openapi.json")
    headers = {"Authorization": f"Bearer {hub.keys.admin_token}"}
    started = time.monotonic()
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in _modes(operation):
            failure = _failure(operation, mode, headers)
            if failure is not None:
                failures.append(failure)
    elapsed = time.monotonic() - started
    assert operations > 60, "the document lost operations"
    assert not failures, "\n\n".join(failures)
    assert elapsed < BUDGET_SECONDS, f"schemathesis took {elapsed:.0f} s"
