"""Captures: the packets each coverage report's interval dropped unread for a wrong checksum
(an agent run with `--checksums auto` or `verify`), which a verdict over that time names.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        batch.add_column(sa.Column("bad_checksums", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        batch.drop_column("bad_checksums")
