"""The OAuth endpoints' two budgets as rules, without I/O (decision 0051). The same
rules over HTTP, on both databases: test_token_rate_limits.py."""

import asyncio

import pytest
from prometheus_client import REGISTRY

from onceonly.hub.audit.exceptions import AuditUnavailable
from onceonly.hub.auth.exceptions import (
    InvalidClient,
    InvalidDpopProofGrant,
    TokenRequestsThrottled,
)
from onceonly.hub.auth.service import TokenLimits
from onceonly.hub.config import Settings
from onceonly.hub.kit.problems import DatabaseUnavailable

BURST = 3  # of both budgets; one token back a second
OWNER, ATTACKER = "10.0.0.1", "10.0.0.66"
THROTTLED = "onceonly_oauth_token_throttled_total"


def limits(**changes: float) -> TokenLimits:
    values = {
        "token_client_burst": BURST,
        "token_client_per_minute": 60,
        "token_address_burst": BURST,
        "token_address_per_minute": 60,
        **changes,
    }
    return TokenLimits(Settings(**values))  # type: ignore[arg-type]


def issue(limited: TokenLimits, client_id: str, *, source: str = OWNER, now: float = 0) -> None:
    """A token request by ``client_id`` (authenticated), answered with a token."""
    admission = limited.admit(client_id=client_id, source=source, now=now)
    admission.issuing(client_id, now=now)
    admission.answered(now=now)


def refuse(limited: TokenLimits, client_id: str | None, *, source: str, now: float = 0) -> None:
    """A request that is admitted and then refused (a forged assertion, say)."""
    admission = limited.admit(client_id=client_id, source=source, now=now)
    admission.failed(InvalidClient("the client could not be authenticated"), now=now)


def throttled(
    limited: TokenLimits, client_id: str | None, *, source: str, now: float = 0
) -> TokenRequestsThrottled:
    """A request refused by its address's budget, before anything is verified."""
    with pytest.raises(TokenRequestsThrottled) as refused:
        limited.admit(client_id=client_id, source=source, now=now)
    return refused.value


def over_budget(
    limited: TokenLimits, client_id: str, *, source: str = OWNER, now: float = 0
) -> TokenRequestsThrottled:
    """A token request admitted, by a client that authenticated over its own budget."""
    admission = limited.admit(client_id=client_id, source=source, now=now)
    with pytest.raises(TokenRequestsThrottled) as refused:
        admission.issuing(client_id, now=now)
    admission.failed(refused.value, now=now)
    return refused.value


def test_a_client_past_its_burst_waits_for_its_budget_to_refill() -> None:
    limited = limits()
    for _ in range(BURST):
        issue(limited, "a")
    refusal = over_budget(limited, "a")
    assert (refusal.budget, refusal.status, refusal.error) == ("client", 429, "slow_down")
    assert refusal.headers["Retry-After"] == "1"
    issue(limited, "a", now=1.0)


def test_requests_that_name_a_client_never_reach_its_budget() -> None:
    """Only a client that authenticated reads its budget: requests that name it and
    fail, from anywhere, are refused as any other (a 429 for its budget would tell
    them the client exists) and neither spend its budget nor prolong its wait."""
    limited = limits(token_address_burst=100_000)
    for _ in range(BURST):
        issue(limited, "a")
    for _ in range(1000):
        refuse(limited, "a", source=ATTACKER, now=0.5)
    assert over_budget(limited, "a", now=0.5).budget == "client"
    issue(limited, "a", now=1.0)


def test_a_client_over_its_budget_spends_its_addresss_budget() -> None:
    """Its requests were verified before they were refused: their address pays for
    them, as for any refusal, which bounds that work."""
    limited = limits()
    for _ in range(BURST):
        issue(limited, "a")
    for _ in range(BURST):
        assert over_budget(limited, "a").audited  # each the request's own, audited with it
    assert throttled(limited, "a", source=OWNER).budget == "address"


def test_failed_requests_naming_a_client_spend_only_their_addresss_budget() -> None:
    limited = limits()
    for _ in range(BURST):
        refuse(limited, "victim", source=ATTACKER)
    assert throttled(limited, "victim", source=ATTACKER).budget == "address"
    for _ in range(BURST):
        issue(limited, "victim", source=OWNER)


def test_token_requests_in_flight_together_get_no_more_than_the_budget() -> None:
    """Thirty requests admitted at once, all authenticated before any is answered:
    each spends its token as it is issuing, so only BURST find one."""
    limited = limits(token_address_burst=1000)
    admissions = [limited.admit(client_id="a", source=OWNER, now=0) for _ in range(30)]
    issuing, refused = [], 0
    for admission in admissions:
        try:
            admission.issuing("a", now=0)
        except TokenRequestsThrottled as refusal:
            admission.failed(refusal, now=0)
            refused += 1
        else:
            issuing.append(admission)
    for admission in issuing:
        admission.answered(now=0.05)
    assert (len(issuing), refused) == (BURST, 30 - BURST)
    assert over_budget(limited, "a", now=0.5).budget == "client"


@pytest.mark.parametrize(
    "failure",
    [InvalidDpopProofGrant("the DPoP proof was used before"), AuditUnavailable("full")],
)
def test_a_token_not_issued_after_all_gives_the_clients_token_back(
    failure: BaseException,
) -> None:
    limited = limits(token_address_burst=1000)
    for _ in range(10 * BURST):
        admission = limited.admit(client_id="a", source=OWNER, now=0)
        admission.issuing("a", now=0)
        admission.failed(failure, now=0)
    for _ in range(BURST):
        issue(limited, "a")
    assert over_budget(limited, "a").budget == "client"


def test_a_token_issued_gives_the_addresss_token_back() -> None:
    limited = limits()
    for n in range(10 * BURST):  # many clients behind one address, each served
        issue(limited, f"client-{n % 5}", source=OWNER, now=n)
    limited.admit(client_id="another", source=OWNER, now=10.0 * BURST)


@pytest.mark.parametrize(
    "failure",
    [DatabaseUnavailable("away"), RuntimeError("a bug"), asyncio.CancelledError()],
)
def test_the_hubs_own_failures_cost_the_address_nothing(failure: BaseException) -> None:
    limited = limits()
    for _ in range(10 * BURST):
        limited.admit(client_id="a", source=OWNER, now=0).failed(failure, now=0)
    limited.admit(client_id="a", source=OWNER, now=0)


def test_made_up_client_ids_are_kept_nowhere() -> None:
    limited = limits(token_address_burst=100_000)
    for n in range(20_000):
        refuse(limited, f"made-up-{n}", source=ATTACKER)
    assert (len(limited.issued), len(limited.refused)) == (0, 1)


def test_memory_is_bounded_whatever_the_addresses() -> None:
    limited = limits(token_limit_keys=100)
    for n in range(5_000):
        refuse(limited, None, source=f"10.1.{n // 256}.{n % 256}")
    assert len(limited.refused) == 100


def test_one_refusal_per_address_a_minute_is_audited_if_it_names_a_client() -> None:
    limited = limits()
    for _ in range(BURST):
        refuse(limited, None, source=ATTACKER)
    unnamed = [throttled(limited, None, source=ATTACKER).audited for _ in range(3)]
    named = [throttled(limited, f"c{n}", source=ATTACKER).audited for n in range(3)]
    assert (unnamed, named) == ([False] * 3, [True, False, False])


def count(budget: str) -> float:
    return REGISTRY.get_sample_value(THROTTLED, {"budget": budget}) or 0.0


def test_an_address_refusal_is_counted_under_its_budget() -> None:
    limited = limits()
    for _ in range(BURST):
        refuse(limited, None, source=ATTACKER)
    before = count("address"), count("client")
    for _ in range(7):
        throttled(limited, "x", source=ATTACKER)
    assert (count("address"), count("client")) == (before[0] + 7, before[1])


def holder_request(limited: TokenLimits, client_id: str | None, *, source: str) -> None:
    """An introspection or revocation request, admitted and answered."""
    limited.admit(client_id=client_id, source=source, now=0).answered(now=0)


def test_introspection_and_revocation_spend_no_clients_budget() -> None:
    limited = limits()
    for _ in range(BURST):
        issue(limited, "a")
    for _ in range(10 * BURST):  # admitted while its tokens are spent, and spending none
        holder_request(limited, "a", source=OWNER)
    assert over_budget(limited, "a").budget == "client"
    assert len(limited.issued) == 1


def test_introspection_and_revocation_share_the_addresss_budget_for_refusals() -> None:
    limited = limits()
    for _ in range(BURST):
        admission = limited.admit(client_id="x", source=ATTACKER, now=0)
        admission.failed(InvalidClient("the client could not be authenticated"), now=0)
    with pytest.raises(TokenRequestsThrottled) as refused:
        limited.admit(client_id="x", source=ATTACKER, now=0)
    assert (refused.value.budget, refused.value.audited) == ("address", True)
    assert throttled(limited, "victim", source=ATTACKER).budget == "address"
