"""Alembic environment: migrations run as the database owner, never as the application role."""

from alembic import context
from sqlalchemy import create_engine, pool

url = context.config.attributes.get("owner_url") or context.config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("no database URL given to the migrations")

engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
