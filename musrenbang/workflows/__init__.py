"""Temporal workflows: the cycle and its forums. Deterministic: they import only the domain,
the standard library and temporalio, and carry ids, not documents."""
