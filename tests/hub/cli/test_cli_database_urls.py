"""Every database URL an operator writes is named in messages without its password, and
never stops a command with a traceback: a user with no port, a Unix socket, no user,
an IPv6 host, a password with ``@`` or ``:`` (escaped or not), a URL that does not parse
(an operator's review: ``postgresql://postgres@127.0.0.1/db`` crashed every check)."""

import pytest

from onceonly.hub.cli import startup

from tests.hub.cli.conftest import Onceonly
from tests.hub_testing import module_database


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://postgres@127.0.0.1/db", "postgresql://postgres@127.0.0.1/db"),
        (
            "postgresql://onceonly@/onceonly?host=/run/postgresql",
            "postgresql://onceonly@/onceonly?host=%2Frun%2Fpostgresql",
        ),
        ("postgresql://127.0.0.1/db", "postgresql://127.0.0.1/db"),
        ("postgresql://u:SECRETPW@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("postgresql://u:SEC%40RET%3APW@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://onceonly:SECRETPW@db.internal:5432/onceonly?connect_timeout=10",
            "postgresql://onceonly:***@db.internal:5432/onceonly?connect_timeout=10",
        ),
        (
            "postgresql://u@h/db?password=SECRETPW&sslmode=require",
            "postgresql://u@h/db?sslmode=require",
        ),
        ("postgresql+psycopg://adapter:SECRETPW@db.internal/registry", None),
        ("mysql://x@host/db", "mysql://x@host/db"),
        ("sqlite:////var/lib/onceonly/onceonly.db", "sqlite:////var/lib/onceonly/onceonly.db"),
        ("not a url", "the configured database (database_url does not parse)"),
        ("postgresql://u:SECRET@PW@h/db", None),
    ],
)
def test_every_url_form_is_named_without_its_password(url: str, shown: str | None) -> None:
    name = startup.database_name(url)
    if shown is not None:
        assert name == shown
    for message in (name, startup.without_secrets(f"failed at {url} ({url.upper()})", url)):
        assert "SECRET" not in message
        assert "SEC%40RET" not in message


def test_a_decoded_password_is_hidden_too() -> None:
    url = "postgresql://u:SEC%40RET%3APW@h:5432/db"
    assert startup.without_secrets("password SEC@RET:PW refused", url) == "password *** refused"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:9/db",
        "postgresql://postgres@[::1]:9/db",
        "postgresql://u:SECRET%40PW@127.0.0.1:9/db",
        "mysql://x@host/db",
        "not a url",
    ],
)
def test_an_unreachable_database_of_any_form_is_one_line(onceonly: Onceonly, url: str) -> None:
    for command in (("config", "check"), ("migrate",)):
        status, _, err = onceonly(*command, database_url=url)
        assert status == 1, err
        assert len(err.splitlines()) == 1, err
        assert "Traceback" not in err
        assert "SECRET" not in err


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def own_postgres(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated PostgreSQL database of this test's own."""
    return module_database(request, tmp_path_factory)


def test_a_user_without_a_port_reaches_the_database(onceonly: Onceonly, own_postgres: str) -> None:
    """The review's URL: a user, no password, no port."""
    url = own_postgres.replace(":5432/", "/")
    assert "@" in url
    assert ":5432" not in url
    status, out, err = onceonly("config", "check", database_url=url)
    assert (status, err) == (0, "")
    assert f"ok database: {url}, schema at the newest revision" in out.splitlines()
    status, out, err = onceonly("migrate", database_url=url)
    assert (status, err) == (0, "")
    assert out.startswith(f"{url}: already at ")
