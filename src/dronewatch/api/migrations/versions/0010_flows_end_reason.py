"""Flows: `end_reason` as a column, filled from each stored document, so that counting a
device's evicted flows reads no JSON in SQL (PostgreSQL refuses to read a text field out of a
document with an escaped NUL anywhere in it).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BATCH = 5000
"""Documents read, and their column written, a page at a time while filling it."""


def upgrade() -> None:
    with op.batch_alter_table("flows") as batch:
        batch.add_column(sa.Column("end_reason", sa.String(16)))
    conn = op.get_bind()
    flows = sa.table(
        "flows", sa.column("uid", sa.String), sa.column("doc"), sa.column("end_reason")
    )
    # The documents are parsed here, not in SQL (any document reads back, NUL or not), a page
    # of them at a time, in uid order.
    last = ""
    while True:
        rows = conn.execute(
            sa.select(flows.c.uid, sa.cast(flows.c.doc, sa.Text))
            .where(flows.c.uid > last)
            .order_by(flows.c.uid)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        last = rows[-1][0]
        values = []
        for uid, text in rows:
            reason = json.loads(text).get("end_reason") if text else None
            if isinstance(reason, str):
                # As the column type stores it (`db.nul_free`, cut to its length).
                values.append({"key": uid, "reason": reason.replace("\x00", "\ufffd")[:16]})
        if values:
            conn.execute(
                flows.update()
                .where(flows.c.uid == sa.bindparam("key"))
                .values(end_reason=sa.bindparam("reason")),
                values,
            )


def downgrade() -> None:
    with op.batch_alter_table("flows") as batch:
        batch.drop_column("end_reason")
