"""The transparency log: a Merkle tree per log, signed checkpoints, and read models only
the append path may change.

- `audit.tree` holds the hash of every perfect subtree of two or more leaves (RFC 9162;
  the leaves are the events' own hashes, leaf index = seq - 1), written once, as the
  integrator (musrenbang/events/tree.py) extends the tree after the log grows. A root or
  proof for any size then needs O(log n) rows, read by primary key.
- `audit.checkpoints` keeps every signed checkpoint (a C2SP signed note) as issued. The
  key that signs them never enters this database.
- Both are append-only as `audit.events` is: triggers refuse UPDATE, DELETE and TRUNCATE;
  the application may INSERT and SELECT.
- The application role no longer changes the read models or the log's head itself: the
  append functions run as their owner (SECURITY DEFINER, with a fixed search_path), so
  `read.*` and `audit.logs` change only together with an appended event.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import re

from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE OR REPLACE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.% is append-only: % is refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'MR003',
              HINT = 'Record a new event that corrects the old one instead.';
END $$;

CREATE TABLE audit.tree (
    log_id  text     NOT NULL,
    level   smallint NOT NULL,
    idx     bigint   NOT NULL,
    hash    bytea    NOT NULL,
    PRIMARY KEY (log_id, level, idx),
    CONSTRAINT tree_level CHECK (level BETWEEN 1 AND 62),
    CONSTRAINT tree_idx CHECK (idx >= 0),
    CONSTRAINT tree_hash_length CHECK (octet_length(hash) = 32)
);

CREATE TABLE audit.checkpoints (
    log_id     text        NOT NULL,
    size       bigint      NOT NULL,
    root       bytea       NOT NULL,
    note       text        NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_id, size),
    CONSTRAINT checkpoints_size CHECK (size >= 0),
    CONSTRAINT checkpoints_root_length CHECK (octet_length(root) = 32)
);
"""

_TABLES = ("audit.tree", "audit.checkpoints")
_TRIGGERS = """
CREATE TRIGGER {name}_no_update BEFORE UPDATE ON {table}
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER {name}_no_delete BEFORE DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
"""

# The functions that append (migrations 0003 and 0004), by signature.
APPEND_FUNCTIONS = (
    "audit.append(text, jsonb)",
    "audit.append_one(text, text, bigint, text, bytea)",
    "audit.append_one_proposal(text, text, bigint, text, bytea, jsonb)",
    "audit.append_one_forum(text, text, bigint, text, bytea, jsonb)",
    "audit.append_one_cycle(text, text, bigint, text, bytea, jsonb)",
)

GRANTS = """
GRANT SELECT, INSERT ON audit.tree, audit.checkpoints TO "{role}";
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA read FROM "{role}";
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit.logs FROM "{role}";
REVOKE EXECUTE ON FUNCTION read.apply(text, jsonb) FROM "{role}";
"""

_SAFE = re.compile(r"^[A-Za-z0-9_]+$")


def upgrade() -> None:
    role = context.config.attributes.get("app_role", "musrenbang_app")
    if not _SAFE.match(role):
        raise ValueError("the application role must be a plain identifier")
    driver = op.get_bind().connection.driver_connection
    driver.execute(SCHEMA)
    for table in _TABLES:
        driver.execute(_TRIGGERS.format(table=table, name=table.split(".")[1]))
    for function in APPEND_FUNCTIONS:
        driver.execute(
            f"ALTER FUNCTION {function} SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
        )
    driver.execute(GRANTS.format(role=role))


def downgrade() -> None:
    role = context.config.attributes.get("app_role", "musrenbang_app")
    if not _SAFE.match(role):
        raise ValueError("the application role must be a plain identifier")
    driver = op.get_bind().connection.driver_connection
    for function in APPEND_FUNCTIONS:
        driver.execute(f"ALTER FUNCTION {function} SECURITY INVOKER RESET search_path")
    driver.execute(
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA read TO "{role}";'
        f' GRANT SELECT, INSERT, UPDATE ON audit.logs TO "{role}";'
        f' GRANT EXECUTE ON FUNCTION read.apply(text, jsonb) TO "{role}";'
        " DROP TABLE audit.tree, audit.checkpoints;"
    )
