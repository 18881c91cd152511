"""Activities: every piece of I/O a workflow needs (appending events, notifying, rendering)."""
