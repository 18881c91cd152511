"""`audit.append_one`: one event whose stream the caller knows, in one SQL statement.

Most appends are one decision on one usulan, made outside any other transaction. For
those, `audit.append` (a PL/pgSQL function of several statements, each started up anew in
every transaction) cost more than the rows it writes. `audit.append_one` is a single
statement: the head's UPDATE takes the log's row lock, chains the event from the head it
locked, and the event, the head and the event's read-model row are written together. It
serves events that change no read model; `audit.append_one_proposal`, `_forum` and
`_cycle` do the same and also upsert their read model's row.

It writes only when the caller's guess of the stream holds, and says nothing of why not:
no row comes back when the log has no head yet or the stream's guessed last event (version
`p_version - 1`, hash `p_prev`) is not in the log; a key already recorded or a version
another writer took first breaks a unique index, and the statement fails. Either way
nothing is written, and the caller asks `audit.append`, with its full check, instead.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import re

from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The read models an event can change: table, key, and whether it has stage/unit columns.
# `p_row` is the row's new state, [id, status, cycle_id, stage, unit, state].
_MODELS = {
    "proposal": ("read.proposals", "proposal_id", True),
    "forum": ("read.forums", "forum_id", True),
    "cycle": ("read.cycles", "cycle_id", False),
}


def _upsert(kind: str) -> str:
    table, key, placed = _MODELS[kind]
    extra = ["cycle_id", "stage", "unit"] if placed else []
    sources = {"cycle_id": "p_row->>2", "stage": "p_row->>3", "unit": "p_row->>4"}
    columns = ["log_id", *extra, "status", "state", "version", "last_seq", "updated_at"]
    values = ["p_log_id", *(sources[c] for c in extra), "p_row->>1", "p_row->5"]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    return (
        f", model AS (INSERT INTO {table} AS t ({key}, {', '.join(columns)})"
        f" SELECT p_row->>0, {', '.join(values)}, p_version, head.seq, p_occurred::timestamptz"
        f" FROM head ON CONFLICT ({key}) DO UPDATE SET {updates})"
    )


FUNCTION = r"""
-- Appends one event to a log in a single statement, when the caller's guess of its stream
-- holds (see audit.append for the general case and the full check).
--   p_content:  the event's canonical JSON text;
--   p_version:  the version it takes in its stream (1: a new stream);
--   p_occurred: its occurred_at, as in the content;
--   p_prev:     the hash of the stream's event at p_version - 1 (null for a new stream);
--   p_row:      (audit.append_one_<model> only) the new state of the read-model row the
--               event changes, [id, status, cycle_id, stage, unit, state].
-- Returns audit.append's 'appended' row, or no row (nothing written) when the log has no
-- head or the guessed last event is not in the log. A key already recorded, or a version
-- taken, fails the statement on a unique index: nothing is written either.
--
-- Hash, as audit.append: SHA-256(0x00 || prev_hash || be64(seq) || record), with
--   record = {"event":<content>,"recorded_at":"<UTC, microseconds>","version":<n>}.
-- The UPDATE locks the head row and, if another append committed after this statement's
-- snapshot, works from the head that append left. The probe of the guess may read the
-- older snapshot: events are never removed, so a guess it finds holds, and one it misses
-- only sends the caller to the full check.
CREATE FUNCTION audit.{name}(
    p_log_id text, p_content text, p_version bigint, p_occurred text, p_prev bytea{row})
RETURNS TABLE (outcome text, ord int, stream text, seq bigint, hash bytea,
               version bigint, recorded_at timestamptz, detail text)
LANGUAGE sql AS $$
WITH head AS (
    UPDATE audit.logs l
    SET head_seq = l.head_seq + 1,
        head_hash = sha256(
            '\x00'::bytea || l.head_hash || int8send(l.head_seq + 1)
            || convert_to(concat(
                '{"event":', p_content, ',"recorded_at":"',
                to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                '","version":', p_version, '}'), 'UTF8'))
    WHERE l.log_id = p_log_id
      AND (p_version = 1 OR EXISTS (
          SELECT FROM audit.events e
          WHERE e.stream = p_content::json->>'stream' AND e.version = p_version - 1
            AND e.hash = p_prev))
    RETURNING old.head_hash AS prev, new.head_seq AS seq, new.head_hash AS hash
), event AS (
    INSERT INTO audit.events
        (log_id, seq, content, version, recorded_at, occurred_at, prev_hash, hash)
    SELECT p_log_id, head.seq, p_content, p_version, now(), p_occurred::timestamptz,
           head.prev, head.hash
    FROM head
    RETURNING stream
){upsert}
SELECT 'appended', 1, event.stream, head.seq, head.hash, p_version, now(), NULL::text
FROM head, event
$$;

GRANT EXECUTE ON FUNCTION audit.{name} TO "{role}";
"""

_SAFE = re.compile(r"^[A-Za-z0-9_]+$")


def _functions() -> dict[str, tuple[str, str]]:
    """Each function's name: (its extra parameter, its read-model upsert). One function a
    read model, since every data-modifying part of a statement is started up on each call,
    whether or not it writes."""
    functions = {"append_one": ("", "")}
    for kind in _MODELS:
        functions[f"append_one_{kind}"] = (", p_row jsonb", _upsert(kind))
    return functions


def upgrade() -> None:
    role = context.config.attributes.get("app_role", "musrenbang_app")
    if not _SAFE.match(role):
        raise ValueError("the application role must be a plain identifier")
    driver = op.get_bind().connection.driver_connection
    major = driver.info.server_version // 10000
    if major < 18:  # for RETURNING old.*, new.*
        raise RuntimeError(f"musrenbang needs PostgreSQL 18 or newer; this server is {major}")
    for name, (row, upsert) in _functions().items():
        driver.execute(
            FUNCTION.replace("{name}", name)
            .replace("{row}", row)
            .replace("{upsert}", upsert)
            .replace("{role}", role)
        )


def downgrade() -> None:
    for name in _functions():
        op.execute(f"DROP FUNCTION audit.{name}")
