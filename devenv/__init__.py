"""Embedded development servers (Redis, PostgreSQL) for the README's commands and the tests."""
