"""The append-only, hash-chained event log and its read models.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import re

from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = """
CREATE SCHEMA audit;
CREATE SCHEMA read;

-- One row per log (one log per region). Its row lock serializes appends to that log
-- (see musrenbang/events/append.py), and it carries the head of the chain:
--   record = {"event": content, "recorded_at": ..., "version": n}   (RFC 8785)
--   hash   = SHA-256(0x00 || prev_hash || be64(seq) || record)
CREATE TABLE audit.logs (
    log_id      text PRIMARY KEY,
    head_seq    bigint NOT NULL DEFAULT 0,
    head_hash   bytea  NOT NULL DEFAULT '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The event log. `content` is the event's RFC 8785 canonical JSON, the one source of
-- truth: every descriptive column is generated from it, so none can be changed apart
-- from it, and `content`, `version` and `recorded_at` are all covered by `hash`.
-- The generated columns parse `content` as json (a validating scan), not jsonb (a
-- tree build): it is several times cheaper on the append path.
CREATE TABLE audit.events (
    log_id          text        NOT NULL,
    seq             bigint      NOT NULL,
    content         text        NOT NULL,
    version         bigint      NOT NULL,
    recorded_at     timestamptz NOT NULL,
    -- Business time, copied from `content` for indexing. Not generated: a generated
    -- column needs an immutable expression, and a wrapper function would cost more than
    -- the rest of the insert. The check keeps it equal to the hashed value.
    occurred_at     timestamptz NOT NULL,
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL,
    idempotency_key text        GENERATED ALWAYS AS ((content::json) ->> 'idempotency_key') STORED,
    stream          text        GENERATED ALWAYS AS ((content::json) ->> 'stream') STORED,
    type            text        GENERATED ALWAYS AS ((content::json) ->> 'type') STORED,
    cycle_id        text        GENERATED ALWAYS AS ((content::json) -> 'metadata' ->> 'cycle_id') STORED,
    payload         jsonb       GENERATED ALWAYS AS (((content::json) -> 'payload')::jsonb) STORED,
    actor           jsonb       GENERATED ALWAYS AS (((content::json) -> 'actor')::jsonb) STORED,
    PRIMARY KEY (log_id, seq),
    CONSTRAINT events_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT events_stream_version_key UNIQUE (stream, version),
    CONSTRAINT events_seq_positive CHECK (seq > 0),
    CONSTRAINT events_hash_length CHECK (octet_length(hash) = 32 AND octet_length(prev_hash) = 32),
    CONSTRAINT events_occurred_at_matches CHECK (occurred_at = ((content::json) ->> 'occurred_at')::timestamptz)
);
CREATE INDEX events_type_idx ON audit.events (type, log_id, seq);
CREATE INDEX events_cycle_idx ON audit.events (cycle_id, log_id, seq) WHERE cycle_id IS NOT NULL;

-- Nothing that happened can be edited away: the database refuses it, whoever asks.
CREATE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit.events is append-only: % is refused', TG_OP
        USING ERRCODE = 'MR003',
              HINT = 'Record a new event that corrects the old one instead.';
END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER events_no_delete BEFORE DELETE ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON audit.events
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- Read models: current state of each usulan and forum, written in the same transaction
-- as the events that change them, and rebuildable from the log.
CREATE TABLE read.proposals (
    proposal_id text PRIMARY KEY,
    log_id      text   NOT NULL,
    cycle_id    text,
    stage       text,
    unit        text,
    status      text   NOT NULL,
    state       jsonb  NOT NULL,
    version     bigint NOT NULL,
    last_seq    bigint NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX proposals_cycle_idx ON read.proposals (cycle_id, stage, unit);

CREATE TABLE read.forums (
    forum_id    text PRIMARY KEY,
    log_id      text   NOT NULL,
    cycle_id    text,
    stage       text,
    unit        text,
    status      text   NOT NULL,
    state       jsonb  NOT NULL,
    version     bigint NOT NULL,
    last_seq    bigint NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX forums_cycle_idx ON read.forums (cycle_id, stage, unit);

CREATE TABLE read.cycles (
    cycle_id    text PRIMARY KEY,
    log_id      text   NOT NULL,
    status      text   NOT NULL,
    state       jsonb  NOT NULL,
    version     bigint NOT NULL,
    last_seq    bigint NOT NULL,
    updated_at  timestamptz NOT NULL
);
"""

GRANTS = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE "{role}" LOGIN PASSWORD '{password}';
    END IF;
END $$;
GRANT USAGE ON SCHEMA audit, read TO "{role}";
GRANT SELECT, INSERT ON audit.events TO "{role}";
GRANT SELECT, INSERT, UPDATE ON audit.logs TO "{role}";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA read TO "{role}";
"""

_SAFE = re.compile(r"^[A-Za-z0-9_]+$")


def upgrade() -> None:
    role = context.config.attributes.get("app_role", "musrenbang_app")
    password = context.config.attributes.get("app_password", "musrenbang_app")
    if not _SAFE.match(role) or "'" in password:
        raise ValueError(
            "the application role must be a plain identifier and its password quote-free"
        )
    # Straight to the driver: the SQL holds '%' (RAISE formats) and ':' that SQLAlchemy
    # would otherwise read as placeholders.
    driver = op.get_bind().connection.driver_connection
    driver.execute(SCHEMA)
    driver.execute(GRANTS.format(role=role, password=password))


def downgrade() -> None:
    op.get_bind().connection.driver_connection.execute("DROP SCHEMA read, audit CASCADE")
