"""The append functions run as their owner (0006), so only the application role may call
them: EXECUTE is taken from PUBLIC, which PostgreSQL grants on every new function.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _functions() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location(
        "r0006", Path(__file__).with_name("0006_transparency_log.py")
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("revision 0006 is missing beside this one")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.APPEND_FUNCTIONS)


def upgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    for function in _functions():
        driver.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")


def downgrade() -> None:
    driver = op.get_bind().connection.driver_connection
    for function in _functions():
        driver.execute(f"GRANT EXECUTE ON FUNCTION {function} TO PUBLIC")
