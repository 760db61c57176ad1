"""Evidence frames of flows that left a device, for dissection on demand.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evidence",
        sa.Column("uid", sa.String(32), primary_key=True),
        sa.Column("agent", sa.String(100), nullable=False),
        sa.Column("linktype", sa.Integer, nullable=False),
        sa.Column("frames", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("evidence")
