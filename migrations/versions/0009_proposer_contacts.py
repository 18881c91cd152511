"""Proposers' contacts, for telling them what became of their usulan: personal data, so
kept apart from the log (which is forever) in a table the application may erase from,
and never in an event, a workflow's history or a read model.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import re

from alembic import context, op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS private;
CREATE TABLE IF NOT EXISTS private.contacts (
    proposal_id text PRIMARY KEY,
    contact     text NOT NULL CHECK (length(contact) BETWEEN 3 AND 254),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
"""
GRANTS = """
GRANT USAGE ON SCHEMA private TO "{role}";
GRANT SELECT, INSERT, DELETE ON private.contacts TO "{role}";
"""
_SAFE = re.compile(r"^[A-Za-z0-9_]+$")


def upgrade() -> None:
    role = context.config.attributes.get("app_role", "musrenbang_app")
    if not _SAFE.fullmatch(role):
        raise ValueError("the application role must be a plain identifier")
    driver = op.get_bind().connection.driver_connection
    driver.execute(SCHEMA)
    driver.execute(GRANTS.format(role=role))


def downgrade() -> None:
    op.get_bind().connection.driver_connection.execute("DROP SCHEMA private CASCADE")
