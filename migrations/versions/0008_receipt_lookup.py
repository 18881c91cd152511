"""An usulan is looked up by its receipt code (the public page /lacak/{code}): an index on
the code in its read model.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS proposals_receipt_idx ON read.proposals ((state->>'receipt'))"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS read.proposals_receipt_idx")
