"""Egress observations, the judge's input: a device's alerts are folded from them.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "egress",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(400), nullable=False, unique=True),
        sa.Column("agent", sa.String(100), nullable=False),
        sa.Column("host_ip", sa.String(45), nullable=False),
        sa.Column("doc", sa.JSON, nullable=False),
    )
    op.create_index("ix_egress_host_ip", "egress", ["host_ip"])


def downgrade() -> None:
    op.drop_index("ix_egress_host_ip", "egress")
    op.drop_table("egress")
