"""The append functions write an event's descriptive columns, parsing its content once.

`audit.events` had six columns generated from `content` and a check that `occurred_at`
matched it: seven parses of every event's JSON on insert, more than half of the insert's
cost. Now the append functions, the only way the application can add an event, parse the
content once (`json_to_record`) and write those columns from it:

- the six columns become plain columns (`DROP EXPRESSION` keeps every stored value and
  rewrites nothing) and the `occurred_at` check goes;
- the application role may no longer INSERT into `audit.events` itself: only the append
  functions (SECURITY DEFINER, migration 0006) write events, and they take every
  descriptive column from the content they hash;
- `audit.append` takes the contents as an array of their own (`text[]`, sent in binary:
  no JSON string to escape, send and unescape), and its checks, like the columns, read
  each event's stream and key from its content;
- it returns its rows after the insert, from what was written, instead of one by one as
  it hashes.

`content` stays the one source of truth: the hash covers it, verification recomputes
from it, and the columns only index it. The chaining loop joins the record with `||`
rather than `concat()`, which looks up every argument's output function on every call.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from alembic import context, op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_COLUMNS = ("idempotency_key", "stream", "type", "cycle_id", "payload", "actor")

# The fields of an event's content the columns come from, in one parse.
_RECORD = (
    "jsonb_to_record(({source})::jsonb) AS r(idempotency_key text, stream text, type text,"
    " occurred_at timestamptz, metadata jsonb, payload jsonb, actor jsonb)"
)

APPEND = r"""
DROP FUNCTION audit.append(text, jsonb);

-- Appends a batch of events to one log, all or nothing, serialized on the log's head row
-- (the rules of revision 0003, which this replaces).
--
-- `p_contents` are the events' canonical JSON texts, in order, as an array (sent in
-- binary, they reach the function as they are, with no JSON string to unescape), and
-- `p_batch` one JSON document of the rest:
--   "events":   [[occurred_at, version], ...], one for each content, the version being
--               the one it takes in its stream by the application's guess below;
--   "expected", "guesses", "models", "check": as revision 0003 describes.
-- The stream, key, type, cycle and the rest come from the contents themselves.
CREATE FUNCTION audit.append(p_log_id text, p_contents text[], p_batch jsonb)
RETURNS TABLE (outcome text, ord int, stream text, seq bigint, hash bytea,
               version bigint, recorded_at timestamptz, detail text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_head      bigint;
    v_hash      bytea;
    v_held      boolean;
    v_stamp     text;
    v_versions  bigint[];
    v_occurred  timestamptz[];
    v_streams   text[];
    v_prevs     bytea[] := '{}';
    v_hashes    bytea[] := '{}';
    v_content   text;
    v_n         int;
BEGIN
    -- As in revision 0003: the head row's lock serializes appends to this log until the
    -- transaction ends, and the probe of the guesses may run on an older snapshot (events
    -- are never removed, so a guess it finds holds, and one it misses is checked in full).
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
        -- Every reason to write nothing, in one statement, each key read from the event's
        -- own content. The LATERAL probes go through the indexes whatever the statistics
        -- say (LIMIT keeps them from being flattened).
        RETURN QUERY
            SELECT 'known', k.i::int, e.stream, e.seq, e.hash, e.version, e.recorded_at,
                   e.content
            FROM unnest(p_contents) WITH ORDINALITY AS k(content, i)
            CROSS JOIN LATERAL (
                SELECT * FROM audit.events e
                WHERE e.idempotency_key = k.content::json->>'idempotency_key' LIMIT 1
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
    SELECT array_agg((x.ev->>1)::bigint ORDER BY x.i),
           array_agg((x.ev->>0)::timestamptz ORDER BY x.i)
    INTO v_versions, v_occurred
    FROM jsonb_array_elements(p_batch->'events') WITH ORDINALITY AS x(ev, i);

    -- Chain the events.
    v_stamp := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    -- FOREACH walks the array once; p_contents[i] would seek from its start every time.
    v_n := 0;
    FOREACH v_content IN ARRAY p_contents LOOP
        v_n := v_n + 1;
        v_prevs[v_n] := v_hash;
        v_hash := sha256(
            '\x00'::bytea || v_hash || int8send(v_head + v_n)
            || convert_to('{"event":' || v_content || ',"recorded_at":"' || v_stamp
                          || '","version":' || v_versions[v_n] || '}', 'UTF8'));
        v_hashes[v_n] := v_hash;
    END LOOP;

    -- The events, each column an event is found by read from its content in one parse,
    -- the head and the usulan read model, in one statement (a data-modifying part runs
    -- whether or not the rest reads it); the other read models only when the batch
    -- changes them.
    WITH inserted AS (
        INSERT INTO audit.events
            (log_id, seq, content, version, recorded_at, occurred_at, prev_hash, hash,
             idempotency_key, stream, type, cycle_id, payload, actor)
        SELECT p_log_id, v_head + x.i, x.content, v_versions[x.i], now(), r.occurred_at,
               x.prev, x.hash,
               r.idempotency_key, r.stream, r.type, r.metadata->>'cycle_id', r.payload,
               r.actor
        FROM ROWS FROM (unnest(p_contents), unnest(v_prevs), unnest(v_hashes))
             WITH ORDINALITY AS x(content, prev, hash, i),
             {record}
        RETURNING seq, stream
    ), head AS (
        UPDATE audit.logs SET head_seq = v_head + v_n, head_hash = v_hash
        WHERE log_id = p_log_id
    ), proposals AS (
        {proposals}
    )
    SELECT array_agg(i.stream ORDER BY i.seq) INTO v_streams FROM inserted i;
    IF jsonb_array_length(p_batch->'models'->'forum') > 0 THEN
        {forums};
    END IF;
    IF jsonb_array_length(p_batch->'models'->'cycle') > 0 THEN
        {cycles};
    END IF;

    RETURN QUERY
        SELECT 'appended', x.i::int, x.stream, v_head + x.i, x.hash, v_versions[x.i], now(),
               NULL::text
        FROM unnest(v_streams, v_hashes) WITH ORDINALITY AS x(stream, hash, i)
        ORDER BY x.i;
END $$;

REVOKE EXECUTE ON FUNCTION audit.append(text, text[], jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.append(text, text[], jsonb) TO "{role}";
"""

APPEND_ONE = r"""
-- As in revision 0004, the columns written from the content, parsed once.
CREATE OR REPLACE FUNCTION audit.{name}(
    p_log_id text, p_content text, p_version bigint, p_occurred text, p_prev bytea{row})
RETURNS TABLE (outcome text, ord int, stream text, seq bigint, hash bytea,
               version bigint, recorded_at timestamptz, detail text)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
WITH content AS (
    SELECT r.* FROM {record}
), head AS (
    UPDATE audit.logs l
    SET head_seq = l.head_seq + 1,
        head_hash = sha256(
            '\x00'::bytea || l.head_hash || int8send(l.head_seq + 1)
            || convert_to(
                '{"event":' || p_content || ',"recorded_at":"'
                || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                || '","version":' || p_version || '}', 'UTF8'))
    WHERE l.log_id = p_log_id
      AND (p_version = 1 OR EXISTS (
          SELECT FROM audit.events e, content c
          WHERE e.stream = c.stream AND e.version = p_version - 1 AND e.hash = p_prev))
    RETURNING old.head_hash AS prev, new.head_seq AS seq, new.head_hash AS hash
), event AS (
    INSERT INTO audit.events
        (log_id, seq, content, version, recorded_at, occurred_at, prev_hash, hash,
         idempotency_key, stream, type, cycle_id, payload, actor)
    SELECT p_log_id, head.seq, p_content, p_version, now(), c.occurred_at, head.prev,
           head.hash, c.idempotency_key, c.stream, c.type, c.metadata->>'cycle_id',
           c.payload, c.actor
    FROM head, content c
    RETURNING stream
){upsert}
SELECT 'appended', 1, event.stream, head.seq, head.hash, p_version, now(), NULL::text
FROM head, event
$$;
"""

_SAFE = re.compile(r"^[A-Za-z0-9_]+$")


def _revision(filename: str) -> ModuleType:
    """An earlier revision's module, for the texts it keeps."""
    spec = importlib.util.spec_from_file_location(
        filename.removesuffix(".py"), Path(__file__).with_name(filename)
    )
    if spec is None or spec.loader is None:
        raise RuntimeError(f"revision {filename} is missing beside this one")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _role() -> str:
    role = context.config.attributes.get("app_role", "musrenbang_app")
    if not _SAFE.match(role):
        raise ValueError("the application role must be a plain identifier")
    return str(role)


def upgrade() -> None:
    role = _role()
    r0003 = _revision("0003_append_fast_path.py")
    r0004 = _revision("0004_append_one.py")
    driver = op.get_bind().connection.driver_connection
    driver.execute(
        "ALTER TABLE audit.events "
        + ", ".join(f"ALTER COLUMN {c} DROP EXPRESSION" for c in _COLUMNS)
        + ", DROP CONSTRAINT events_occurred_at_matches"
    )
    driver.execute(f'REVOKE INSERT ON audit.events FROM "{role}"')
    driver.execute(
        APPEND.replace("{record}", _RECORD.format(source="x.content"))
        .replace("{role}", role)
        .replace("{proposals}", r0003._upsert("proposal", "read.proposals", "proposal_id", True))
        .replace("{forums}", r0003._upsert("forum", "read.forums", "forum_id", True))
        .replace("{cycles}", r0003._upsert("cycle", "read.cycles", "cycle_id", False))
    )
    for name, (row, upsert) in r0004._functions().items():
        driver.execute(
            APPEND_ONE.replace("{name}", name)
            .replace("{row}", row)
            .replace("{upsert}", upsert)
            .replace("{record}", _RECORD.format(source="p_content"))
        )


def downgrade() -> None:
    """Brings back the generated columns (rewriting the table) with their indexes, the
    check, the role's INSERT, and the functions as revisions 0003, 0004, 0006 and 0007
    left them."""
    role = _role()
    r0001 = _revision("0001_event_log.py")
    r0003 = _revision("0003_append_fast_path.py")
    r0004 = _revision("0004_append_one.py")
    r0006 = _revision("0006_transparency_log.py")
    schema = r0001.SCHEMA
    generated = {
        line.split()[0]: line.strip().rstrip(",")
        for line in schema.splitlines()
        if "GENERATED ALWAYS" in line
    }
    driver = op.get_bind().connection.driver_connection
    driver.execute(
        "ALTER TABLE audit.events "
        + ", ".join(f"DROP COLUMN {c} CASCADE" for c in _COLUMNS)
        + ", "
        + ", ".join(f"ADD COLUMN {generated[c]}" for c in _COLUMNS)
        + ", ADD CONSTRAINT events_idempotency_key_key UNIQUE (idempotency_key)"
        + ", ADD CONSTRAINT events_stream_version_key UNIQUE (stream, version)"
        + ", ADD CONSTRAINT events_occurred_at_matches"
        " CHECK (occurred_at = ((content::json) ->> 'occurred_at')::timestamptz)"
    )
    for line in schema.splitlines():
        if line.startswith("CREATE INDEX events_"):
            driver.execute(line)
    driver.execute(f'GRANT INSERT ON audit.events TO "{role}"')
    driver.execute("DROP FUNCTION audit.append(text, text[], jsonb)")
    driver.execute(
        r0003.FUNCTION.replace("DROP FUNCTION audit.append(text, jsonb);", "")
        .replace("{proposals}", r0003._upsert("proposal", "read.proposals", "proposal_id", True))
        .replace("{forums}", r0003._upsert("forum", "read.forums", "forum_id", True))
        .replace("{cycles}", r0003._upsert("cycle", "read.cycles", "cycle_id", False))
        .replace("{role}", role)
    )
    for name, (row, upsert) in r0004._functions().items():
        driver.execute(f"DROP FUNCTION audit.{name}")
        driver.execute(
            r0004.FUNCTION.replace("{name}", name)
            .replace("{row}", row)
            .replace("{upsert}", upsert)
            .replace("{role}", role)
        )
    for function in r0006.APPEND_FUNCTIONS:
        driver.execute(
            f"ALTER FUNCTION {function} SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
        )
        driver.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
