"""All SQL of people, roles, sessions and failed sign-ins."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col, delete, select

from onceonly.hub.people.models import Person, PersonRole, PersonSession, SignInFailure


async def person_by_username(session: AsyncSession, username: str) -> Person | None:
    query = select(Person).where(col(Person.username) == username)
    return (await session.execute(query)).scalars().first()


async def person_by_oidc(session: AsyncSession, *, issuer: str, subject: str) -> Person | None:
    query = select(Person).where(
        col(Person.oidc_issuer) == issuer, col(Person.oidc_subject) == subject
    )
    return (await session.execute(query)).scalars().first()


async def list_people(session: AsyncSession) -> list[Person]:
    return list((await session.execute(select(Person).order_by(col(Person.username)))).scalars())


async def roles_of(session: AsyncSession, person_id: str) -> list[PersonRole]:
    query = select(PersonRole).where(col(PersonRole.person_id) == person_id)
    return list((await session.execute(query)).scalars())


async def roles_of_many(session: AsyncSession, person_ids: list[str]) -> list[PersonRole]:
    query = select(PersonRole).where(col(PersonRole.person_id).in_(person_ids))
    return list((await session.execute(query)).scalars())


async def replace_roles(session: AsyncSession, person_id: str, roles: list[PersonRole]) -> None:
    await session.execute(delete(PersonRole).where(col(PersonRole.person_id) == person_id))
    session.add_all(roles)


async def live_session(
    session: AsyncSession, *, token_hash: str, now: datetime
) -> tuple[PersonSession, Person, list[PersonRole]] | None:
    """The unexpired, unrevoked session with this token hash, its active person and
    that person's roles as they are now (two queries)."""
    query = (
        select(PersonSession, Person)
        .join(Person, col(Person.id) == col(PersonSession.person_id))
        .where(
            col(PersonSession.token_hash) == token_hash,
            col(PersonSession.expires_at) > now,
            col(PersonSession.revoked_at).is_(None),
            col(Person.status) == "active",
        )
    )
    row = (await session.execute(query)).first()
    if row is None:
        return None
    found, person = row
    return found, person, await roles_of(session, person.id)


async def revoke_sessions(
    session: AsyncSession, *, person_id: str, now: datetime, keep: str | None = None
) -> None:
    """End every session of the person, except the one whose token hash is ``keep``."""
    query = sa.update(PersonSession).where(
        col(PersonSession.person_id) == person_id, col(PersonSession.revoked_at).is_(None)
    )
    if keep is not None:
        query = query.where(col(PersonSession.token_hash) != keep)
    await session.execute(query.values(revoked_at=now))


async def revoke_session(session: AsyncSession, *, token_hash: str, now: datetime) -> None:
    await session.execute(
        sa.update(PersonSession)
        .where(col(PersonSession.token_hash) == token_hash, col(PersonSession.revoked_at).is_(None))
        .values(revoked_at=now)
    )


async def spend_totp_step(session: AsyncSession, *, person_id: str, step: int) -> bool:
    """Record ``step`` as used, unless it (or a later one) already was: a code counts once."""
    result = await session.execute(
        sa.update(Person)
        .where(
            col(Person.id) == person_id,
            sa.or_(col(Person.totp_last_step).is_(None), col(Person.totp_last_step) < step),
        )
        .values(totp_last_step=step)
    )
    return bool(getattr(result, "rowcount", 0))


async def totp_secrets_not_sealed_with(
    conn: AsyncConnection, *, prefix: str
) -> list[tuple[str, str, str]]:
    """(person id, username, sealed secret) of every stored TOTP secret that does not
    begin with ``prefix``."""
    query = sa.select(col(Person.id), col(Person.username), col(Person.totp_secret)).where(
        col(Person.totp_secret).is_not(None),
        sa.not_(col(Person.totp_secret).startswith(prefix, autoescape=True)),
    )
    return [(row[0], row[1], str(row[2])) for row in (await conn.execute(query)).all()]


async def replace_totp_secret(conn: AsyncConnection, *, person_id: str, old: str, new: str) -> int:
    """Put ``new`` in place of the person's sealed secret if it still is ``old`` (1), else
    leave it (0): a change made meanwhile wins."""
    result = await conn.execute(
        sa.update(Person)
        .where(col(Person.id) == person_id, col(Person.totp_secret) == old)
        .values(totp_secret=new)
    )
    return int(getattr(result, "rowcount", 0))


_failures = SignInFailure.__table__  # type: ignore[attr-defined]


async def failure_counts(
    conn: AsyncConnection, *, keys: list[str]
) -> dict[str, tuple[int, datetime]]:
    """key: (failures, the latest failure's time) for each of ``keys`` that has any."""
    query = sa.select(_failures.c.key, _failures.c.failures, _failures.c.last_failure_at).where(
        _failures.c.key.in_(keys)
    )
    return {row[0]: (row[1], row[2]) for row in (await conn.execute(query)).all()}


async def lock_failures(conn: AsyncConnection) -> None:
    """Serialize sign-in attempts' check-and-count across processes sharing one
    PostgreSQL (SQLite's BEGIN IMMEDIATE serializes writers itself)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(4226)"))


async def add_failures(conn: AsyncConnection, *, keys: list[str], at: datetime) -> None:
    """One more failure, at ``at``, under each of ``keys`` (distinct)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(_failures).values(
        [{"key": key, "failures": 1, "last_failure_at": at} for key in keys]
    )
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[_failures.c.key],
            set_={
                "failures": _failures.c.failures + 1,
                "last_failure_at": insert.excluded.last_failure_at,
            },
        )
    )


async def forget_failures(conn: AsyncConnection, *, key: str | None, take_back: list[str]) -> None:
    """Forget every failure under ``key`` (if any), and one under each of ``take_back``."""
    if key is not None:
        await conn.execute(sa.delete(_failures).where(_failures.c.key == key))
    await conn.execute(
        sa.update(_failures)
        .where(_failures.c.key.in_(take_back), _failures.c.failures > 0)
        .values(failures=_failures.c.failures - 1)
    )


async def purge_failures(conn: AsyncConnection, *, before: datetime) -> None:
    """Counts whose latest failure is older than ``before`` count for nothing."""
    await conn.execute(sa.delete(_failures).where(_failures.c.last_failure_at < before))
