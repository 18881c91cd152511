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

-- One row per log (one log per region). Its row lock serializes appends to that log,
-- and it carries the head of the chain.
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

-- The append path. Callers pass canonical event contents; the function serializes on
-- the log's head row (so `seq` is gapless and in commit order: a reader tailing `seq`
-- can never see seq n+1 committed before seq n), applies idempotency and the expected
-- stream versions, and chains the hashes:
--   record = {"event": content, "recorded_at": db time, "version": stream version}
--   hash   = SHA-256(0x00 || prev_hash || be64(seq) || record)
-- The record is itself RFC 8785 canonical, because `content` is and the keys are sorted.
CREATE FUNCTION audit.append_events(
    p_log_id   text,
    p_contents text[],
    p_expected bigint[]
) RETURNS TABLE (seq bigint, hash bytea, version bigint, recorded_at timestamptz, replayed boolean)
LANGUAGE plpgsql
-- Its statements have one good plan whatever the arguments; replanning them on every
-- call would cost more than the append itself.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    n           integer := cardinality(p_contents);
    v_seq       bigint;
    v_hash      bytea;
    v_now       timestamptz := now();
    v_now_text  text := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    -- outputs, in input order
    o_seq       bigint[] := '{}';
    o_hash      bytea[] := '{}';
    o_version   bigint[] := '{}';
    o_recorded  timestamptz[] := '{}';
    o_replayed  boolean[] := '{}';
    -- the events to insert
    i_seq       bigint[] := '{}';
    i_content   text[] := '{}';
    i_version   bigint[] := '{}';
    i_prev      bytea[] := '{}';
    i_hash      bytea[] := '{}';
    versions    bigint[];
    known       record;
    r           record;
    j           integer := 0;
BEGIN
    IF n IS NULL OR n = 0 THEN
        RETURN;
    END IF;
    IF cardinality(p_expected) <> n THEN
        RAISE EXCEPTION 'append_events: argument arrays differ in length' USING ERRCODE = '22023';
    END IF;

    SELECT l.head_seq, l.head_hash INTO v_seq, v_hash
      FROM audit.logs l WHERE l.log_id = p_log_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit.logs (log_id) VALUES (p_log_id) ON CONFLICT DO NOTHING;
        SELECT l.head_seq, l.head_hash INTO v_seq, v_hash
          FROM audit.logs l WHERE l.log_id = p_log_id FOR UPDATE;
    END IF;

    -- Stream versions, set-based: the stream's current version plus the event's place
    -- among that stream's events in the batch (events already recorded excluded). Every
    -- lookup is an index probe, so the cached generic plan is as good as a custom one.
    SELECT array_agg(x.ver ORDER BY x.ord) INTO versions FROM (
        SELECT t.ord,
               CASE WHEN t.known THEN NULL ELSE coalesce(m.version, 0)
                    + count(*) FILTER (WHERE NOT t.known)
                      OVER (PARTITION BY t.stream ORDER BY t.ord) END AS ver
          FROM (SELECT u.stream, u.ord, EXISTS (
                       SELECT 1 FROM audit.events e WHERE e.idempotency_key = u.key) AS known
                  FROM (SELECT (c::json ->> 'stream') AS stream, (c::json ->> 'idempotency_key') AS key, o AS ord
                          FROM unnest(p_contents) WITH ORDINALITY AS v(c, o)) u) t
          LEFT JOIN LATERAL (SELECT e.version FROM audit.events e WHERE e.stream = t.stream
                              ORDER BY e.version DESC LIMIT 1) m ON true
    ) x;

    FOR r IN SELECT (u.content::json ->> 'idempotency_key') AS key, u.content,
                    (u.content::json ->> 'stream') AS stream, u.expected, u.ord
               FROM unnest(p_contents, p_expected) WITH ORDINALITY AS u(content, expected, ord)
    LOOP
        IF versions[r.ord] IS NULL THEN
            -- Idempotency, under the lock: the same key with the same content answers
            -- with the original (seq, hash); the same key with other content is refused.
            SELECT e.content, e.seq, e.hash, e.version, e.recorded_at INTO known
              FROM audit.events e WHERE e.idempotency_key = r.key;
            IF known.content <> r.content THEN
                RAISE EXCEPTION 'idempotency key % was already used for different content (seq %)',
                    r.key, known.seq
                    USING ERRCODE = 'MR001', DETAIL = r.key;
            END IF;
            o_seq := o_seq || known.seq; o_hash := o_hash || known.hash;
            o_version := o_version || known.version; o_recorded := o_recorded || known.recorded_at;
            o_replayed := o_replayed || true;
            CONTINUE;
        END IF;
        IF r.expected IS NOT NULL AND r.expected <> versions[r.ord] - 1 THEN
            RAISE EXCEPTION 'stream % is at version %, expected %',
                r.stream, versions[r.ord] - 1, r.expected
                USING ERRCODE = 'MR002',
                      DETAIL = json_build_object('stream', r.stream, 'expected', r.expected,
                                                 'actual', versions[r.ord] - 1)::text;
        END IF;
        v_seq := v_seq + 1;
        i_prev := i_prev || v_hash;
        v_hash := sha256('\\x00'::bytea || v_hash || int8send(v_seq) || convert_to(
            '{"event":' || r.content || ',"recorded_at":"' || v_now_text
            || '","version":' || versions[r.ord] || '}', 'UTF8'));
        i_seq := i_seq || v_seq; i_content := i_content || r.content;
        i_version := i_version || versions[r.ord]; i_hash := i_hash || v_hash;
        o_seq := o_seq || v_seq; o_hash := o_hash || v_hash;
        o_version := o_version || versions[r.ord]; o_recorded := o_recorded || v_now;
        o_replayed := o_replayed || false;
        j := j + 1;
    END LOOP;

    IF j > 0 THEN
        INSERT INTO audit.events (log_id, seq, content, version, recorded_at, occurred_at,
                                  prev_hash, hash)
        SELECT p_log_id, u.seq, u.content, u.version, v_now,
               ((u.content::json) ->> 'occurred_at')::timestamptz, u.prev, u.hash
          FROM unnest(i_seq, i_content, i_version, i_prev, i_hash) AS u(seq, content, version, prev, hash);
        UPDATE audit.logs l SET head_seq = v_seq, head_hash = v_hash WHERE l.log_id = p_log_id;
    END IF;

    RETURN QUERY SELECT * FROM unnest(o_seq, o_hash, o_version, o_recorded, o_replayed);
END $$;

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
GRANT EXECUTE ON FUNCTION audit.append_events(text, text[], bigint[]) TO "{role}";
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
