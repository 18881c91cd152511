"""A smaller row and one index fewer for every event; a batch may be sent in parts.

Measured on the append path, an event's row and its indexes were most of what the server
wrote and did: about 1.2 kB of row (the content, and beside it `payload` and `actor` as
jsonb copies of parts of it, 30% of the row) and five index entries.

- `payload` and `actor` become virtual generated columns (PostgreSQL 18): computed from
  `content` when read, never stored. They keep their names and type, every query reads
  them as before, and they can no longer say anything but what the hashed content says.
- The indexes by type and by cycle become one, by cycle and type: every query that filters
  by type also names the cycle or the stream, and a page of one log by type alone walks
  the log's own key.
- The text columns the log and the read models are indexed by compare bytewise (collation
  "C") instead of through the C library's locale: equality as before, and code-point
  order (which C.UTF-8, the embedded server's default, also gives; under another default
  such as en_US.UTF-8, ids and codes now sort by code point, as codes should), without a
  call into the locale for every key compared on every index insert (about 5% of an
  append's work in the database).
- `audit.append` takes a fourth argument, `p_strict` (false when left out): where it would
  answer why it writes nothing (a key already recorded, a stream not at the expected
  version, a guess that does not hold) it raises instead (SQLSTATE MR010). A writer that
  sends the parts of one batch in one transaction without waiting for each answer (a
  pipeline) needs that: a part that cannot be written must abort the transaction, so that
  its COMMIT writes none of the batch rather than the parts before it. It is an argument,
  not a key of the batch document, so that a writer sending it to a database without this
  revision is refused outright instead of being answered as a non-strict call.

The append functions still parse each content once, as jsonb (which refuses what a jsonb
column could not hold, so every virtual column can always be read), and take the stored
columns from it. The upgrade first checks that every content already recorded parses as
jsonb (those of revisions before 0010 were parsed as json only), and refuses to go on,
naming the first that does not, rather than leave a row whose `payload` cannot be read.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from types import ModuleType
from typing import Any

from alembic import context, op
from alembic.script import ScriptDirectory

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

VIRTUAL = {
    "payload": "((content::jsonb) -> 'payload')",
    "actor": "((content::jsonb) -> 'actor')",
}

STRICT = """
        IF FOUND THEN
            -- A part of a pipelined batch: a reason to write nothing aborts the
            -- transaction, so that its COMMIT writes none of the other parts either.
            IF p_strict THEN
                RAISE EXCEPTION 'log %: this part of a batch cannot be written as it is',
                    p_log_id USING ERRCODE = 'MR010',
                    HINT = 'The writer sends the batch again with the full check.';
            END IF;
            RETURN;
        END IF;"""


def _revision(revision_id: str) -> ModuleType:
    """An earlier revision's module, as Alembic loaded it, for the texts it keeps."""
    return ScriptDirectory.from_config(context.config).get_revision(revision_id).module


def _replaced(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise RuntimeError(f"revision 0011's append functions are not as expected: {old!r}")
    return text.replace(old, new)


def _slim(function: str) -> str:
    """An append function of revision 0011 that writes neither `payload` nor `actor`."""
    function = _replaced(
        function,
        "idempotency_key, stream, type, cycle_id, payload, actor)",
        "idempotency_key, stream, type, cycle_id)",
    )
    function = _replaced(
        function,
        " metadata jsonb, payload jsonb, actor jsonb)",
        " metadata jsonb)",
    )
    if "audit.append(" in function:
        function = _replaced(
            function,
            "CREATE OR REPLACE FUNCTION audit.append(p_log_id text, p_contents text[],"
            " p_batch jsonb)",
            "DROP FUNCTION audit.append(text, text[], jsonb);\n"
            "CREATE FUNCTION audit.append(p_log_id text, p_contents text[], p_batch jsonb,"
            " p_strict boolean DEFAULT false)",
        )
        for verb in ("REVOKE EXECUTE ON FUNCTION", "GRANT EXECUTE ON FUNCTION"):
            function = _replaced(
                function,
                f"{verb} audit.append(text, text[], jsonb)",
                f"{verb} audit.append(text, text[], jsonb, boolean)",
            )
        function = _replaced(
            function,
            "r.metadata->>'cycle_id', r.payload,\n               r.actor\n",
            "r.metadata->>'cycle_id'\n",
        )
        return _replaced(
            function,
            "\n        IF FOUND THEN\n            RETURN;\n        END IF;",
            STRICT,
        )
    return _replaced(
        function,
        "c.metadata->>'cycle_id',\n           c.payload, c.actor\n",
        "c.metadata->>'cycle_id'\n",
    )


# The indexed text columns that compare bytewise from this revision on.
BYTEWISE = {
    "audit.events": ("log_id", "stream", "idempotency_key", "type", "cycle_id"),
    "audit.logs": ("log_id",),
    "audit.tree": ("log_id",),
    "audit.checkpoints": ("log_id",),
    "private.contacts": ("proposal_id",),
    "read.proposals": ("proposal_id", "cycle_id", "stage", "unit"),
    "read.forums": ("forum_id", "cycle_id", "stage", "unit"),
    "read.cycles": ("cycle_id",),
}


def _collate(driver: Any, collation: str) -> None:
    for table, columns in BYTEWISE.items():
        driver.execute(
            f"ALTER TABLE {table} "
            + ", ".join(f'ALTER COLUMN {c} TYPE text COLLATE "{collation}"' for c in columns)
        )


ANALYZE = "ANALYZE " + ", ".join(BYTEWISE)  # the statistics of a retyped column go with it

# The first content recorded that a jsonb column could not hold, if any.
UNREADABLE = (
    "SELECT seq, log_id FROM audit.events WHERE NOT pg_input_is_valid(content, 'jsonb')"
    " ORDER BY log_id, seq LIMIT 1"
)


def upgrade() -> None:
    r0011 = _revision("0011")
    functions = r0011._functions(queued=True)
    driver = op.get_bind().connection.driver_connection
    unreadable = driver.execute(UNREADABLE).fetchone()
    if unreadable is not None:
        raise RuntimeError(
            f"log {unreadable[1]}, seq {unreadable[0]}: its content does not parse as jsonb,"
            " so its payload could not be read once computed from it; revision 0012 is not"
            " applied (see `musrenbang audit verify`)"
        )
    # The functions name the columns that go: replaced first, in the same transaction.
    for function in functions:
        driver.execute(_slim(function))
    driver.execute(
        "ALTER TABLE audit.events DROP COLUMN payload, DROP COLUMN actor, "
        + ", ".join(
            f"ADD COLUMN {name} jsonb GENERATED ALWAYS AS ({expression}) VIRTUAL"
            for name, expression in VIRTUAL.items()
        )
    )
    driver.execute("DROP INDEX audit.events_type_idx, audit.events_cycle_idx")
    _collate(driver, "C")  # rebuilds the indexes on these columns, not the tables
    driver.execute(
        "CREATE INDEX events_cycle_type_idx ON audit.events (cycle_id, type, log_id, seq)"
        " WHERE cycle_id IS NOT NULL"
    )
    driver.execute(ANALYZE)


def downgrade() -> None:
    """Stored `payload` and `actor` again (filled from the content as the table is
    rewritten), the two indexes, and the functions as revision 0011 left them."""
    r0011 = _revision("0011")
    driver = op.get_bind().connection.driver_connection
    driver.execute(
        "ALTER TABLE audit.events DROP COLUMN payload, DROP COLUMN actor, "
        + ", ".join(
            f"ADD COLUMN {name} jsonb GENERATED ALWAYS AS ({expression}) STORED"
            for name, expression in VIRTUAL.items()
        )
    )
    driver.execute(
        "ALTER TABLE audit.events "
        + ", ".join(f"ALTER COLUMN {name} DROP EXPRESSION" for name in VIRTUAL)
    )
    driver.execute("DROP INDEX audit.events_cycle_type_idx")
    _collate(driver, "default")
    driver.execute("CREATE INDEX events_type_idx ON audit.events (type, log_id, seq)")
    driver.execute(
        "CREATE INDEX events_cycle_idx ON audit.events (cycle_id, log_id, seq)"
        " WHERE cycle_id IS NOT NULL"
    )
    driver.execute("DROP FUNCTION audit.append(text, text[], jsonb, boolean)")
    for function in r0011._functions(queued=True):
        driver.execute(function)
    driver.execute(ANALYZE)
