"""Workflow tests share the Temporal fixtures of tests/conftest.py."""
