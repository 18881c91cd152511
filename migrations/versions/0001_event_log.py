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

-- ISO-8601 UTC text ('2027-01-31T17:00:00.000000Z') to timestamptz. The cast is only
-- STABLE in general (DateStyle, TimeZone); for this one fixed format it is not, so the
-- wrapper may be IMMUTABLE and feed generated columns.
CREATE FUNCTION audit.utc_timestamp(text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (rtrim($1, 'Z')::timestamp AT TIME ZONE 'UTC') $$;

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
CREATE TABLE audit.events (
    log_id          text        NOT NULL REFERENCES audit.logs (log_id),
    seq             bigint      NOT NULL,
    content         text        NOT NULL,
    version         bigint      NOT NULL,
    recorded_at     timestamptz NOT NULL,
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL,
    idempotency_key text        NOT NULL,
    event_id        uuid        GENERATED ALWAYS AS (((content::jsonb) ->> 'event_id')::uuid) STORED,
    stream          text        GENERATED ALWAYS AS ((content::jsonb) ->> 'stream') STORED,
    type            text        GENERATED ALWAYS AS ((content::jsonb) ->> 'type') STORED,
    schema_version  integer     GENERATED ALWAYS AS (((content::jsonb) ->> 'schema_version')::integer) STORED,
    payload         jsonb       GENERATED ALWAYS AS ((content::jsonb) -> 'payload') STORED,
    actor           jsonb       GENERATED ALWAYS AS ((content::jsonb) -> 'actor') STORED,
    metadata        jsonb       GENERATED ALWAYS AS ((content::jsonb) -> 'metadata') STORED,
    occurred_at     timestamptz GENERATED ALWAYS AS (audit.utc_timestamp((content::jsonb) ->> 'occurred_at')) STORED,
    cycle_id        text        GENERATED ALWAYS AS ((content::jsonb) -> 'metadata' ->> 'cycle_id') STORED,
    PRIMARY KEY (log_id, seq),
    CONSTRAINT events_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream, version),
    CONSTRAINT events_seq_positive CHECK (seq > 0),
    CONSTRAINT events_hash_length CHECK (octet_length(hash) = 32 AND octet_length(prev_hash) = 32),
    CONSTRAINT events_key_matches CHECK (idempotency_key = (content::jsonb) ->> 'idempotency_key'),
    CONSTRAINT events_log_matches CHECK (log_id = (content::jsonb) ->> 'log_id')
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
    p_keys     text[],
    p_contents text[],
    p_streams  text[],
    p_expected bigint[]
) RETURNS TABLE (seq bigint, hash bytea, version bigint, recorded_at timestamptz, replayed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    n           integer := cardinality(p_keys);
    v_seq       bigint;
    v_hash      bytea;
    v_now       timestamptz := now();
    v_now_text  text := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    v_existing  integer;
    o_seq       bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    o_hash      bytea[] := array_fill(NULL::bytea, ARRAY[n]);
    o_version   bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    o_recorded  timestamptz[] := array_fill(NULL::timestamptz, ARRAY[n]);
    o_replayed  boolean[] := array_fill(true, ARRAY[n]);
    o_prev      bytea[] := array_fill(NULL::bytea, ARRAY[n]);
    new_idx     integer[] := '{}';
    versions    bigint[];
    actual      bigint;
    r           record;
    i           integer;
    j           integer;
BEGIN
    IF n IS NULL OR n = 0 THEN
        RETURN;
    END IF;
    IF cardinality(p_contents) <> n OR cardinality(p_streams) <> n OR cardinality(p_expected) <> n THEN
        RAISE EXCEPTION 'append_events: argument arrays differ in length' USING ERRCODE = '22023';
    END IF;

    SELECT l.head_seq, l.head_hash INTO v_seq, v_hash
      FROM audit.logs l WHERE l.log_id = p_log_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit.logs (log_id) VALUES (p_log_id) ON CONFLICT DO NOTHING;
        SELECT l.head_seq, l.head_hash INTO v_seq, v_hash
          FROM audit.logs l WHERE l.log_id = p_log_id FOR UPDATE;
    END IF;

    -- Idempotency, under the lock: the same key with the same content answers with the
    -- original (seq, hash); the same key with other content is refused.
    SELECT count(*) INTO v_existing FROM audit.events e WHERE e.idempotency_key = ANY (p_keys);
    IF v_existing = 0 THEN
        new_idx := ARRAY(SELECT generate_series(1, n));
    ELSE
        FOR i IN 1 .. n LOOP
            SELECT e.content, e.seq, e.hash, e.version, e.recorded_at INTO r
              FROM audit.events e WHERE e.idempotency_key = p_keys[i];
            IF FOUND THEN
                IF r.content <> p_contents[i] THEN
                    RAISE EXCEPTION 'idempotency key % was already used for different content (seq %)',
                        p_keys[i], r.seq
                        USING ERRCODE = 'MR001', DETAIL = p_keys[i];
                END IF;
                o_seq[i] := r.seq; o_hash[i] := r.hash; o_version[i] := r.version;
                o_recorded[i] := r.recorded_at;
            ELSE
                new_idx := new_idx || i;
            END IF;
        END LOOP;
    END IF;

    IF cardinality(new_idx) > 0 THEN
        -- Stream versions for the new events, set-based: current max + position in batch.
        SELECT array_agg(x.ver ORDER BY x.ord) INTO versions FROM (
            SELECT t.ord, coalesce(m.maxv, 0)
                   + row_number() OVER (PARTITION BY t.stream ORDER BY t.ord) AS ver
              FROM unnest(ARRAY(SELECT p_streams[k] FROM unnest(new_idx) AS k))
                   WITH ORDINALITY AS t(stream, ord)
              LEFT JOIN (SELECT e.stream, max(e.version) AS maxv FROM audit.events e
                          WHERE e.stream = ANY (p_streams) GROUP BY e.stream) m
                ON m.stream = t.stream
        ) x;

        FOR j IN 1 .. cardinality(new_idx) LOOP
            i := new_idx[j];
            actual := versions[j] - 1;
            IF p_expected[i] IS NOT NULL AND p_expected[i] <> actual THEN
                RAISE EXCEPTION 'stream % is at version %, expected %', p_streams[i], actual, p_expected[i]
                    USING ERRCODE = 'MR002',
                          DETAIL = json_build_object('stream', p_streams[i],
                                                     'expected', p_expected[i],
                                                     'actual', actual)::text;
            END IF;
            v_seq := v_seq + 1;
            o_prev[i] := v_hash;
            v_hash := sha256('\\x00'::bytea || v_hash || int8send(v_seq) || convert_to(
                '{"event":' || p_contents[i] || ',"recorded_at":"' || v_now_text
                || '","version":' || versions[j] || '}', 'UTF8'));
            o_seq[i] := v_seq; o_hash[i] := v_hash; o_version[i] := versions[j];
            o_recorded[i] := v_now; o_replayed[i] := false;
        END LOOP;

        INSERT INTO audit.events (log_id, seq, content, version, recorded_at, prev_hash, hash,
                                  idempotency_key)
        SELECT p_log_id, o_seq[k], p_contents[k], o_version[k], v_now, o_prev[k], o_hash[k],
               p_keys[k]
          FROM unnest(new_idx) AS k;

        UPDATE audit.logs l SET head_seq = v_seq, head_hash = v_hash WHERE l.log_id = p_log_id;
    END IF;

    RETURN QUERY SELECT o_seq[k], o_hash[k], o_version[k], o_recorded[k], o_replayed[k]
                   FROM generate_series(1, n) AS k;
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
GRANT EXECUTE ON FUNCTION audit.append_events(text, text[], text[], text[], bigint[]) TO "{role}";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA read TO "{role}";
"""

_SAFE = re.compile(r"^[A-Za-z0-9_]+$")


def upgrade() -> None:
    role = context.config.attributes.get("app_role", "musrenbang_app")
    password = context.config.attributes.get("app_password", "musrenbang_app")
    if not _SAFE.match(role) or "'" in password:
        raise ValueError("the application role must be a plain identifier and its password quote-free")
    # Straight to the driver: the SQL holds '%' (RAISE formats) and ':' that SQLAlchemy
    # would otherwise read as placeholders.
    driver = op.get_bind().connection.driver_connection
    driver.execute(SCHEMA)
    driver.execute(GRANTS.format(role=role, password=password))


def downgrade() -> None:
    op.get_bind().connection.driver_connection.execute("DROP SCHEMA read, audit CASCADE")
