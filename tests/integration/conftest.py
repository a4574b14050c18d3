"""Fixtures shared by the integration suites."""

from sql_targets import target  # noqa: F401  (user databases for sql tasks)
