"""The HTTP API: thin. Commands go to Temporal; reads go to PostgreSQL."""
