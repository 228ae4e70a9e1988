"""mcp_credentials.kind: "headers" (stored by the user) or "oauth" (tokens from MCP's OAuth flow)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-19
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mcp_credentials", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="headers", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("mcp_credentials", schema=None) as batch_op:
        batch_op.drop_column("kind")
