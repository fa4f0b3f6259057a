"""audit tree: stored complete-subtree hashes and signed checkpoints

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 09:00:00.000000

``audit_nodes(level, idx, hash)`` holds the hash of the perfect subtree over
leaves ``[idx * 2**level, (idx + 1) * 2**level)`` (RFC 9162 §2.1.1), written in
the transaction that appends the leaves it covers. ``audit_checkpoints`` keeps
every signed C2SP tlog-checkpoint, one per tree size.
"""

import hashlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'audit_nodes',
        sa.Column('level', sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column('idx', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('hash', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('level', 'idx'),
    )
    op.create_table(
        'audit_checkpoints',
        sa.Column('tree_size', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('root', sa.LargeBinary(), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('time', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('tree_size'),
    )
    _backfill_nodes()


def _backfill_nodes() -> None:
    """Store the nodes of entries appended before this revision (frozen copy of the
    frontier algorithm in onceonly.hub.audit.merkle, so this migration never changes)."""
    bind = op.get_bind()
    nodes = sa.table(
        'audit_nodes', sa.column('level'), sa.column('idx'), sa.column('hash')
    )
    query = sa.text('SELECT leaf_hash FROM audit_entries ORDER BY idx')
    leaf_hashes = bind.execute(query).scalars().all()
    batch: list[dict[str, object]] = []
    for row in _completed_nodes(bytes(h) for h in leaf_hashes):
        batch.append(row)
        if len(batch) >= 5000:
            bind.execute(sa.insert(nodes), batch)
            batch = []
    if batch:
        bind.execute(sa.insert(nodes), batch)


def _completed_nodes(leaf_hashes: Iterator[bytes]) -> Iterator[dict[str, object]]:
    frontier: list[bytes] = []
    for index, current in enumerate(leaf_hashes):
        level = 0
        while index >> level & 1:
            current = hashlib.sha256(b'\x01' + frontier.pop() + current).digest()
            level += 1
            yield {'level': level, 'idx': index >> level, 'hash': current}
        frontier.append(current)


def downgrade() -> None:
    op.drop_table('audit_checkpoints')
    op.drop_table('audit_nodes')
