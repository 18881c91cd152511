"""`api.idempotency_keys`: an Idempotency-Key bound to its request, and the answer it got.

As the HTTP draft (draft-ietf-httpapi-idempotency-key-header) and Stripe's keys have it:
a key is bound to the caller, the endpoint and a fingerprint of the body. The same key
with the same request is the same command and gets the first answer, even after its forum
has closed; the same key with another body or endpoint is refused and writes nothing.
Both tables are insert-only for the application (it may only INSERT and SELECT), so a key
is remembered for as long as the deployment keeps its database.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import re

from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE SCHEMA api;
CREATE TABLE api.idempotency_keys (
    subject      text NOT NULL,
    key          text NOT NULL,
    endpoint     text NOT NULL,
    fingerprint  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, key)
);
CREATE TABLE api.idempotency_answers (
    subject      text NOT NULL,
    key          text NOT NULL,
    answer       jsonb NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, key),
    FOREIGN KEY (subject, key) REFERENCES api.idempotency_keys
);
"""

GRANTS = """
GRANT USAGE ON SCHEMA api TO "{role}";
GRANT SELECT, INSERT ON api.idempotency_keys, api.idempotency_answers TO "{role}";
"""

_SAFE = re.compile(r"^[A-Za-z0-9_]+$")


def upgrade() -> None:
    role = context.config.attributes.get("app_role", "musrenbang_app")
    if not _SAFE.match(role):
        raise ValueError("the application role must be a plain identifier")
    driver = op.get_bind().connection.driver_connection
    driver.execute(SCHEMA)
    driver.execute(GRANTS.format(role=role))


def downgrade() -> None:
    op.get_bind().connection.driver_connection.execute("DROP SCHEMA api CASCADE")
