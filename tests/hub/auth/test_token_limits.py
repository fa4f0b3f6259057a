"""The OAuth endpoints' two budgets as rules, without I/O (decision 0051). The same
rules over HTTP, on both databases: test_token_rate_limits.py."""

import asyncio
import ipaddress

import pytest
from prometheus_client import REGISTRY

from onceonly.hub.audit.exceptions import AuditUnavailable
from onceonly.hub.auth.exceptions import (
    InvalidClient,
    InvalidDpopProofGrant,
    TokenRequestsThrottled,
)
from onceonly.hub.auth.service import IPV6_NETWORK_SHARES, TokenLimits
from onceonly.hub.config import Settings
from onceonly.hub.kit.problems import DatabaseUnavailable
from onceonly.hub.people.service import source_of

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


def admitted(limited: TokenLimits, *, source: str, now: float = 0) -> bool:
    """Whether a request from ``source`` is let through (and then refused, 401)."""
    try:
        refuse(limited, "x", source=source, now=now)
    except TokenRequestsThrottled:
        return False
    return True


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
    sources = [f"10.1.{n // 256}.{n % 256}" for n in range(5_000)]
    assert sum(admitted(limited, source=source) for source in sources) == 100
    assert len(limited.refused) == 100


def test_drained_addresses_are_never_forgotten_to_make_room() -> None:
    """Before: 10,000 other addresses (here 100) made the least recently used go, and a
    drained address came back with a full budget."""
    limited = limits(token_limit_keys=100)
    for _ in range(BURST):
        refuse(limited, None, source=ATTACKER)
    others = [admitted(limited, source=f"10.2.{n // 256}.{n % 256}") for n in range(500)]
    assert (others.count(True), len(limited.refused)) == (99, 100)
    assert throttled(limited, None, source=ATTACKER).budget == "address"
    refusal = throttled(limited, None, source="10.3.0.1")  # no room for a new address
    assert refusal.detail.startswith("too many sources of refused requests at once")
    assert admitted(limited, source="10.3.0.1", now=1.0)  # one has refilled, and went


def ipv6_sources(network: str, *, count: int, step_bits: int) -> list[str]:
    """``count`` sources (/64s) in ``network``, ``2 ** step_bits`` /64s apart."""
    base = ipaddress.ip_network(network)
    return [source_of(str(base[(n << step_bits << 64) + 1])) for n in range(count)]


@pytest.mark.parametrize(
    ("step_bits", "network", "share"),
    [(8, "2001:db8:1::/48", IPV6_NETWORK_SHARES[48]), (0, "2001:db8:2::/56", 4)],
)
def test_an_ipv6_network_has_one_budget_for_all_its_64s(
    step_bits: int, network: str, share: int
) -> None:
    """Before: each of a /48's 65,536 /64s had a whole budget of its own."""
    sources = ipv6_sources(network, count=256, step_bits=step_bits)
    limited = limits()
    assert sum(admitted(limited, source=source) for source in sources) == share * BURST
    refusal = throttled(limited, None, source=sources[-1])
    assert refusal.detail.startswith(
        f"too many refused requests from this address's /{network[-2:]}"
    )
    assert admitted(limited, source=source_of("2001:db8:3::1"))  # another /48


def test_an_ipv6_64_has_an_addresss_budget() -> None:
    limited = limits()
    source = source_of("2001:db8:4::1")
    assert [admitted(limited, source=source) for _ in range(BURST + 1)] == [True] * BURST + [False]


def test_answered_ipv6_requests_give_their_networks_tokens_back() -> None:
    limited = limits()
    for source in ipv6_sources("2001:db8:5::/48", count=100, step_bits=8):
        issue(limited, "a", source=source, now=0)
        limited.issued.give_back("a", now=0)  # keep the client within its own budget
    for source in ipv6_sources("2001:db8:5::/48", count=3, step_bits=9):
        assert admitted(limited, source=source)


def test_memory_is_bounded_whatever_the_ipv6_networks() -> None:
    limited = limits(token_limit_keys=100)
    for n in range(2_000):
        admitted(limited, source=source_of(f"2001:db8:{n}::1"))  # a /48 each
    assert [len(limited.refused), *map(len, limited.networks.values())] == [100, 100, 100]


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
