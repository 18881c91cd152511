"""A cheaper `audit.append` for the common case: the caller's guesses hold.

Revision 0002 ran one statement that looked for every reason to write nothing (keys
already recorded, streams not at the expected version, wrong guesses) before each append,
and upserted all three read models in the final statement whether or not the batch
touched them. Starting up those statements was a large part of an append's cost.

Now the guesses are probed in the statement that locks the log's head. When they hold and
the caller asks for no full check (`"check": false`: the application's writer outside a
transaction), nothing more is looked for: a key already recorded, or an event another
writer put at the version this batch takes, breaks a unique index and the whole statement
fails, writing nothing; the caller then calls again with the full check. With
`"check": true` (the default, and always inside a caller's transaction, which a failed
statement would abort) or when a guess does not hold, the full check runs as before.

The read-model rows now come grouped by read model, and each read model's upsert runs only
when the batch has rows for it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import importlib.util
import re
from pathlib import Path

from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _upsert(kind: str, table: str, key: str, placed: bool) -> str:
    """The upsert of one read model's rows, [id, status, cycle_id, stage, unit, state, n]
    in `p_batch->'models'->kind`, n being the 1-based place in "events" of the row's last
    event."""
    extra = ["cycle_id", "stage", "unit"] if placed else []
    sources = {"cycle_id": "r->>2", "stage": "r->>3", "unit": "r->>4"}
    columns = ["log_id", *extra, "status", "state", "version", "last_seq", "updated_at"]
    values = [
        "p_log_id",
        *(sources[c] for c in extra),
        "r->>1",
        "r->5",
        "v_versions[(r->>6)::int]",
        "v_head + (r->>6)::int",
        "v_occurred[(r->>6)::int]",
    ]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    return (
        f"INSERT INTO {table} AS t ({key}, {', '.join(columns)})"
        f" SELECT r->>0, {', '.join(values)}"
        f" FROM jsonb_array_elements(p_batch->'models'->'{kind}') AS x(r)"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


FUNCTION = r"""
DROP FUNCTION audit.append(text, jsonb);

-- Appends a batch of events to one log, all or nothing, serialized on the log's head row.
--
-- `p_batch` is one JSON document:
--   "events":   [[content, stream, idempotency key, occurred_at, version], ...] in order,
--               the content being the event's canonical JSON text and the version the
--               one it takes in its stream, by the application's guess below;
--   "expected": [[stream, version], ...], the versions the streams must be at;
--   "guesses":  [[stream, hex hash or null, version], ...]: for each stream of the
--               batch, the hash and version of its last event as the application
--               believes them to be (null and 0: a new stream). A guess that holds
--               vouches for the versions given;
--   "models":   {"proposal": rows, "forum": rows, "cycle": rows}, the read-model rows the
--               application planned from those guesses, each [id, status, cycle_id,
--               stage, unit, state, n], n being the 1-based place in "events" of the
--               row's last event;
--   "check":    false to look for reasons to write nothing only when a guess fails (see
--               above; a unique index refuses what the guesses cannot rule out). Only for
--               a call that is its own transaction. Default true.
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
    v_held      boolean;
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
    -- The head row's lock serializes appends to this log until the transaction ends; the
    -- statements after this one take fresh snapshots, so they see all that committed
    -- before it. The probe of the guesses (does each stream's guessed last event exist
    -- with the guessed hash?) may run on a snapshot older than the lock: events are never
    -- removed, so a guess it finds holds, and one it misses is checked in full below.
    SELECT l.head_seq, l.head_hash,
           NOT EXISTS (
               SELECT FROM jsonb_array_elements(p_batch->'guesses') AS g(pair)
               WHERE (g.pair->>2)::bigint > 0 AND NOT EXISTS (
                   SELECT FROM audit.events e
                   WHERE e.stream = g.pair->>0 AND e.version = (g.pair->>2)::bigint
                     AND e.hash = decode(g.pair->>1, 'hex')))
    INTO v_head, v_hash, v_held
    FROM audit.logs l WHERE l.log_id = p_log_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit.logs (log_id) VALUES (p_log_id) ON CONFLICT DO NOTHING;
        SELECT l.head_seq, l.head_hash INTO v_head, v_hash
        FROM audit.logs l WHERE l.log_id = p_log_id FOR UPDATE;
        v_held := false;
    END IF;

    IF NOT v_held OR coalesce((p_batch->>'check')::boolean, true) THEN
        -- Every reason to write nothing, in one statement. The LATERAL probes go through
        -- the indexes whatever the statistics say (LIMIT keeps them from being flattened).
        RETURN QUERY
            SELECT 'known', k.i::int, e.stream, e.seq, e.hash, e.version, e.recorded_at,
                   e.content
            FROM jsonb_array_elements(p_batch->'events') WITH ORDINALITY AS k(ev, i)
            CROSS JOIN LATERAL (
                SELECT * FROM audit.events e WHERE e.idempotency_key = k.ev->>2 LIMIT 1
            ) e
            UNION ALL
            SELECT 'conflict', NULL, x.pair->>0, NULL, NULL, coalesce(c.current, 0), NULL,
                   x.pair->>1
            FROM jsonb_array_elements(p_batch->'expected') AS x(pair)
            CROSS JOIN LATERAL (
                SELECT max(e.version) AS current FROM audit.events e
                WHERE e.stream = x.pair->>0
            ) c
            WHERE coalesce(c.current, 0) <> (x.pair->>1)::bigint
            UNION ALL
            SELECT 'stale', NULL, g.pair->>0, NULL, last.hash, coalesce(last.version, 0),
                   NULL, NULL
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

    -- The events, the head and the usulan read model (the one most appends touch), in one
    -- statement; the other read models only when the batch changes them.
    WITH inserted AS (
        INSERT INTO audit.events
            (log_id, seq, content, version, recorded_at, occurred_at, prev_hash, hash)
        SELECT p_log_id, v_head + x.i, x.content, x.version, now(), x.occurred, x.prev, x.hash
        FROM unnest(v_contents, v_versions, v_occurred, v_prevs, v_hashes)
             WITH ORDINALITY AS x(content, version, occurred, prev, hash, i)
    ), head AS (
        UPDATE audit.logs SET head_seq = v_head + v_n, head_hash = v_hash
        WHERE log_id = p_log_id
    ) {proposals};
    IF jsonb_array_length(p_batch->'models'->'forum') > 0 THEN
        {forums};
    END IF;
    IF jsonb_array_length(p_batch->'models'->'cycle') > 0 THEN
        {cycles};
    END IF;
END $$;

GRANT EXECUTE ON FUNCTION audit.append(text, jsonb) TO "{role}";
"""

_SAFE = re.compile(r"^[A-Za-z0-9_]+$")
_PREVIOUS = "0002_append_function.py"


def upgrade() -> None:
    role = context.config.attributes.get("app_role", "musrenbang_app")
    if not _SAFE.match(role):
        raise ValueError("the application role must be a plain identifier")
    sql = (
        FUNCTION.replace("{proposals}", _upsert("proposal", "read.proposals", "proposal_id", True))
        .replace("{forums}", _upsert("forum", "read.forums", "forum_id", True))
        .replace("{cycles}", _upsert("cycle", "read.cycles", "cycle_id", False))
        .replace("{role}", role)
    )
    driver = op.get_bind().connection.driver_connection
    driver.execute(sql)


def downgrade() -> None:
    """Brings back revision 0002's `audit.append`, whose text that revision keeps."""
    role = context.config.attributes.get("app_role", "musrenbang_app")
    if not _SAFE.match(role):
        raise ValueError("the application role must be a plain identifier")
    spec = importlib.util.spec_from_file_location("r0002", Path(__file__).with_name(_PREVIOUS))
    if spec is None or spec.loader is None:
        raise RuntimeError(f"revision 0002 is missing beside {Path(__file__).name}")
    previous = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(previous)
    text = previous.FUNCTIONS.replace("{upserts}", previous.UPSERTS).replace("{role}", role)
    start = text.index("CREATE FUNCTION audit.append")
    end = text.index("GRANT EXECUTE ON FUNCTION read.apply")
    driver = op.get_bind().connection.driver_connection
    driver.execute("DROP FUNCTION audit.append(text, jsonb)")
    driver.execute(text[start:end])
