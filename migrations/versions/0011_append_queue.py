"""Appends to one log wait their turn in a queue, not on the log's head row.

Appends were serialized by the head row's lock alone. When many writers append to one log
at once, that lock is a poor queue: a waiter sleeps on the holder's transaction, and when
it ends, wakes to find the row changed since its statement's snapshot, re-reads it (a
recheck of the whole UPDATE), and races the other waiters for its new version. Measured
with eight clients appending one event each, the server then did fewer appends a second
than with one.

Now each append function first takes a transaction-scoped advisory lock keyed by the log
(`pg_advisory_xact_lock`, the same namespacing as the tree's integrator lock), a plain
lock queue: one writer at a time goes on, the rest sleep in line, and the one whose turn
it is reads the head afresh, in a statement that starts after it got the lock. The head
row is still locked and updated as before, uncontended, and both locks are held until the
transaction ends, after its commit is durable, so `seq` stays gapless and in commit
order exactly as revision 0003 describes. Nothing else changes in the functions.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The queue of one log's appends (a 64-bit key, as the tree's integrator lock has its own).
QUEUE = "pg_advisory_xact_lock(hashtextextended('musrenbang.append:' || p_log_id, 0))"


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


def _replaced(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise RuntimeError(f"revision 0010's append functions are not as expected: {old!r}")
    return text.replace(old, new)


def _functions(*, queued: bool) -> list[str]:
    """The append functions of revision 0010, each taking its log's queue first when
    `queued`, as statements that replace the functions in place."""
    r0010 = _revision("0010_append_derives_columns.py")
    r0003 = _revision("0003_append_fast_path.py")
    r0004 = _revision("0004_append_one.py")
    append = (
        r0010.APPEND.replace("{record}", r0010._RECORD.format(source="x.content"))
        .replace("{role}", r0010._role())
        .replace("{proposals}", r0003._upsert("proposal", "read.proposals", "proposal_id", True))
        .replace("{forums}", r0003._upsert("forum", "read.forums", "forum_id", True))
        .replace("{cycles}", r0003._upsert("cycle", "read.cycles", "cycle_id", False))
    )
    append = _replaced(append, "DROP FUNCTION audit.append(text, jsonb);", "")
    append = _replaced(
        append, "CREATE FUNCTION audit.append(", "CREATE OR REPLACE FUNCTION audit.append("
    )
    if queued:
        append = _replaced(
            append,
            "BEGIN\n    -- As in revision 0003",
            f"BEGIN\n    -- This log's queue first (revision 0011).\n    PERFORM {QUEUE};\n"
            "    -- As in revision 0003",
        )
    texts = [append]
    for name, (row, upsert) in r0004._functions().items():
        one = (
            r0010.APPEND_ONE.replace("{name}", name)
            .replace("{row}", row)
            .replace("{upsert}", upsert)
            .replace("{record}", r0010._RECORD.format(source="p_content"))
        )
        if queued:
            # Its own statement: the append's statement then starts, and takes its
            # snapshot, after the lock is granted, so it finds the head as left.
            one = _replaced(
                one, "AS $$\nWITH content AS (", f"AS $$\nSELECT {QUEUE};\nWITH content AS ("
            )
        texts.append(one)
    return texts


def upgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    for function in _functions(queued=True):
        driver.execute(function)


def downgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    for function in _functions(queued=False):
        driver.execute(function)
