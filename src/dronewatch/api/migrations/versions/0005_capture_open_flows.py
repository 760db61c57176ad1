"""Captures: the flows an agent held open at each coverage report, since when, and the analyzer
failures of the interval (a stopped agent's open flows were never judged).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        batch.add_column(sa.Column("open_flows", sa.BigInteger))
        batch.add_column(sa.Column("open_since", sa.Float))
        batch.add_column(sa.Column("analyzer_errors", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        batch.drop_column("analyzer_errors")
        batch.drop_column("open_since")
        batch.drop_column("open_flows")
