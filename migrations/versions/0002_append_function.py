"""The append path as one server-side call: `audit.append` and `read.apply`.

An append used to take several round trips (lock and read, write, commit); now one call
locks the log's head, checks keys, expected versions and the caller's guesses of the
streams it projects, chains and inserts the events, moves the head and updates the read
models. Called outside a transaction, that one statement is the whole transaction.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import re

from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _upsert(kind: str, table: str, key: str, placed: bool) -> str:
    """The upsert of one read model's rows from a relation `m` (kind, id, status, cycle,
    stage, unit, state, version, last_seq, updated)."""
    extra = ["cycle_id", "stage", "unit"] if placed else []
    sources = {"cycle_id": "cycle", "stage": "stage", "unit": "unit"}
    columns = ["log_id", *extra, "status", "state", "version", "last_seq", "updated_at"]
    values = ["p_log_id", *(sources[c] for c in extra), "status", "state", "version"]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    return (
        f"INSERT INTO {table} AS t ({key}, {', '.join(columns)})"
        f" SELECT id, {', '.join(values)}, last_seq, updated FROM m WHERE kind = '{kind}'"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


# The three read models' upserts as the tail of one statement (each statement has a fixed
# cost), used by both functions below.
UPSERTS = (
    f"proposals AS ({_upsert('proposal', 'read.proposals', 'proposal_id', placed=True)}),"
    f" forums AS ({_upsert('forum', 'read.forums', 'forum_id', placed=True)})"
    f" {_upsert('cycle', 'read.cycles', 'cycle_id', placed=False)};"
)


FUNCTIONS = r"""
-- Brings read-model rows to their new state (the rebuild, from rows planned from the log).
-- Each element of `p_rows` is [kind, id, status, cycle_id, stage, unit, state, version,
-- seq, occurred_at], kind naming the read model (proposal, forum or cycle), the last three
-- those of the last event that changed the row.
CREATE FUNCTION read.apply(p_log_id text, p_rows jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    WITH m AS (
        SELECT r->>0 AS kind, r->>1 AS id, r->>2 AS status, r->>3 AS cycle, r->>4 AS stage,
               r->>5 AS unit, r->6 AS state, (r->>7)::bigint AS version,
               (r->>8)::bigint AS last_seq, (r->>9)::timestamptz AS updated
        FROM jsonb_array_elements(p_rows) AS x(r)
    ), {upserts}
END $$;

-- Appends a batch of events to one log, all or nothing, serialized on the log's head row.
--
-- `p_batch` is one JSON document (cheaper to pass than many arrays):
--   "events":   [[content, stream, idempotency key, occurred_at, version], ...] in order,
--               the content being the event's canonical JSON text and the version the
--               one it takes in its stream, by the application's guess below;
--   "expected": [[stream, version], ...], the versions the streams must be at;
--   "guesses":  [[stream, hex hash or null, version], ...]: for each stream of the
--               batch, the hash and version of its last event as the application
--               believes them to be (null and 0: a new stream). A guess that holds
--               vouches for the versions given;
--   "models":   the read-model rows the application planned from those guesses,
--               [kind, id, status, cycle_id, stage, unit, state, n], n being the 1-based
--               place in "events" of the row's last event.
--
-- Nothing is written, and the rows returned say why, when
--   'known':    keys are already recorded (each with its seq, hash, version, time, content);
--   'conflict': a stream is not at the version expected (detail: expected; version: actual);
--   'stale':    a guess is wrong (version: the stream's actual version).
-- Otherwise every event is chained and inserted, the head moves, the read models are
-- updated, and one 'appended' row per event comes back in batch order.
--
-- Hash of each event (as musrenbang/events/canonical.py documents and verification
-- recomputes): SHA-256(0x00 || prev_hash || be64(seq) || record), with
--   record = {"event":<content>,"recorded_at":"<UTC, microseconds>","version":<n>}.
CREATE FUNCTION audit.append(p_log_id text, p_batch jsonb)
RETURNS TABLE (outcome text, ord int, stream text, seq bigint, hash bytea,
               version bigint, recorded_at timestamptz, detail text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_head      bigint;
    v_hash      bytea;
    v_stamp     text;
    v_contents  text[];
    v_streams   text[];
    v_versions  bigint[];
    v_occurred  timestamptz[];
    v_prevs     bytea[] := '{}';
    v_hashes    bytea[] := '{}';
    v_content   text;
    v_n         int := 0;
BEGIN
    -- The head row's lock serializes appends to this log until the transaction ends. Every
    -- statement below takes a fresh snapshot, so it sees all that committed before it.
    SELECT l.head_seq, l.head_hash INTO v_head, v_hash
    FROM audit.logs l WHERE l.log_id = p_log_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit.logs (log_id) VALUES (p_log_id) ON CONFLICT DO NOTHING;
        SELECT l.head_seq, l.head_hash INTO v_head, v_hash
        FROM audit.logs l WHERE l.log_id = p_log_id FOR UPDATE;
    END IF;

    -- Every reason to write nothing, in one statement. The LATERAL probes go through the
    -- indexes whatever the statistics say (LIMIT keeps them from being flattened).
    RETURN QUERY
        SELECT 'known', k.i::int, e.stream, e.seq, e.hash, e.version, e.recorded_at, e.content
        FROM jsonb_array_elements(p_batch->'events') WITH ORDINALITY AS k(ev, i)
        CROSS JOIN LATERAL (
            SELECT * FROM audit.events e WHERE e.idempotency_key = k.ev->>2 LIMIT 1
        ) e
        UNION ALL
        SELECT 'conflict', NULL, x.pair->>0, NULL, NULL, coalesce(c.current, 0), NULL,
               x.pair->>1
        FROM jsonb_array_elements(p_batch->'expected') AS x(pair)
        CROSS JOIN LATERAL (
            SELECT max(e.version) AS current FROM audit.events e WHERE e.stream = x.pair->>0
        ) c
        WHERE coalesce(c.current, 0) <> (x.pair->>1)::bigint
        UNION ALL
        SELECT 'stale', NULL, g.pair->>0, NULL, last.hash, coalesce(last.version, 0), NULL,
               NULL
        FROM jsonb_array_elements(p_batch->'guesses') AS g(pair)
        LEFT JOIN LATERAL (
            SELECT e.hash, e.version FROM audit.events e
            WHERE e.stream = g.pair->>0 ORDER BY e.version DESC LIMIT 1
        ) last ON true
        WHERE last.hash IS DISTINCT FROM decode(g.pair->>1, 'hex')
           OR coalesce(last.version, 0) <> (g.pair->>2)::bigint;
    IF FOUND THEN
        RETURN;
    END IF;

    -- The guesses held, so the versions the application gave are the streams' next ones.
    SELECT array_agg(x.ev->>0 ORDER BY x.i), array_agg(x.ev->>1 ORDER BY x.i),
           array_agg((x.ev->>3)::timestamptz ORDER BY x.i),
           array_agg((x.ev->>4)::bigint ORDER BY x.i)
    INTO v_contents, v_streams, v_occurred, v_versions
    FROM jsonb_array_elements(p_batch->'events') WITH ORDINALITY AS x(ev, i);

    -- Chain the events; each one's row is returned as it is hashed.
    v_stamp := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    outcome := 'appended';
    recorded_at := now();
    FOREACH v_content IN ARRAY v_contents LOOP
        v_n := v_n + 1;
        v_prevs := v_prevs || v_hash;
        v_hash := sha256(
            '\x00'::bytea || v_hash || int8send(v_head + v_n)
            || convert_to(concat('{"event":', v_content, ',"recorded_at":"', v_stamp,
                                 '","version":', v_versions[v_n], '}'), 'UTF8'));
        v_hashes := v_hashes || v_hash;
        ord := v_n;
        stream := v_streams[v_n];
        seq := v_head + v_n;
        hash := v_hash;
        version := v_versions[v_n];
        RETURN NEXT;
    END LOOP;

    -- The events, the head and the read models, in one statement.
    WITH inserted AS (
        INSERT INTO audit.events
            (log_id, seq, content, version, recorded_at, occurred_at, prev_hash, hash)
        SELECT p_log_id, v_head + x.i, x.content, x.version, now(), x.occurred, x.prev, x.hash
        FROM unnest(v_contents, v_versions, v_occurred, v_prevs, v_hashes)
             WITH ORDINALITY AS x(content, version, occurred, prev, hash, i)
    ), head AS (
        UPDATE audit.logs SET head_seq = v_head + v_n, head_hash = v_hash
        WHERE log_id = p_log_id
    ), m AS (
        SELECT r->>0 AS kind, r->>1 AS id, r->>2 AS status, r->>3 AS cycle, r->>4 AS stage,
               r->>5 AS unit, r->6 AS state, v_versions[(r->>7)::int] AS version,
               v_head + (r->>7)::int AS last_seq, v_occurred[(r->>7)::int] AS updated
        FROM jsonb_array_elements(p_batch->'models') AS x(r)
    ), {upserts}
END $$;

GRANT EXECUTE ON FUNCTION audit.append(text, jsonb) TO "{role}";
GRANT EXECUTE ON FUNCTION read.apply(text, jsonb) TO "{role}";
"""

_SAFE = re.compile(r"^[A-Za-z0-9_]+$")


def upgrade() -> None:
    role = context.config.attributes.get("app_role", "musrenbang_app")
    if not _SAFE.match(role):
        raise ValueError("the application role must be a plain identifier")
    driver = op.get_bind().connection.driver_connection
    driver.execute(FUNCTIONS.replace("{upserts}", UPSERTS).replace("{role}", role))


def downgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    driver.execute("DROP FUNCTION audit.append(text, jsonb)")
    driver.execute("DROP FUNCTION read.apply(text, jsonb)")
