"""Work that must happen only once a session's transaction has committed.

A service that changes state never commits (the request does, STYLE.md); what it must
do only if the change stays (count it in a metric, say) it hands to :func:`on_commit`.
The callbacks run, in order, after the session's next commit; a rollback drops them.
They run inside SQLAlchemy's commit and must be quick and must not raise: an error is
logged and the others still run.
"""

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = logging.getLogger("onceonly.after_commit")

_CALLBACKS = "onceonly.after_commit"


def on_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` after ``session``'s next commit; never if it rolls back. Not for
    a session that uses savepoints (``begin_nested``): SQLAlchemy reports a released
    savepoint as a commit and a rolled-back one as a rollback (none does, today)."""
    session.info.setdefault(_CALLBACKS, []).append(callback)


_BEGUN = "onceonly.commit_begun"


def on_commit_begun(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` when ``session``'s next commit begins (SQLAlchemy's
    ``before_commit``: before its last flush and its COMMIT); a rollback first drops it."""
    session.info.setdefault(_BEGUN, []).append(callback)


@event.listens_for(Session, "before_commit")
def _commit_begins(session: Session) -> None:
    for callback in session.info.pop(_BEGUN, ()):
        try:
            callback()
        except Exception:
            log.exception("a callback before commit failed")


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for callback in session.info.pop(_CALLBACKS, ()):
        try:
            callback()
        except Exception:
            log.exception("a callback after commit failed")


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_CALLBACKS, None)
    session.info.pop(_BEGUN, None)
