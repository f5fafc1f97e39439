"""Run a packaged ``.sql`` file from a migration, online or as offline SQL.

The file is split into statements by a small lexer that knows comments, quoted strings, quoted
identifiers and dollar quoting, so a ``;`` inside any of them never splits a statement. Online,
each statement goes to the driver connection untouched (no bind-parameter parsing, so ``:`` and
``%`` need no escaping); offline (``alembic upgrade --sql``) it is written to the output as is.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Final

from alembic import op

__all__ = ["execute_sql_file", "read_sql", "split_statements"]

_DOLLAR_TAG: Final = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def read_sql(name: str) -> str:
    """The text of ``finally_indexer/db/sql/<name>`` from the installed package."""
    return files("finally_indexer.db").joinpath("sql", name).read_text(encoding="utf-8")


def _skip_quoted(script: str, i: int, quote: str) -> int:
    """Index just past the quoted run starting at ``script[i]``; a doubled quote is an escape."""
    i += 1
    while i < len(script):
        if script[i] == quote:
            if script[i + 1 : i + 2] != quote:
                return i + 1
            i += 1
        i += 1
    return i


def _skip_token(script: str, i: int) -> tuple[int, bool]:
    """Index past the token at ``script[i]`` and whether it is SQL (not a comment or blank)."""
    ch, nxt = script[i], script[i + 1 : i + 2]
    if ch == "-" and nxt == "-":
        end = script.find("\n", i)
        return (len(script) if end < 0 else end + 1), False
    if ch == "/" and nxt == "*":
        end = script.find("*/", i + 2)
        return (len(script) if end < 0 else end + 2), False
    if ch in "'\"":
        return _skip_quoted(script, i, ch), True
    if ch == "$" and (tag := _DOLLAR_TAG.match(script, i)) and not script[i - 1 : i].isalnum():
        end = script.find(tag.group(0), tag.end())
        return (len(script) if end < 0 else end + len(tag.group(0))), True
    return i + 1, not ch.isspace()


def split_statements(script: str) -> list[str]:
    """The statements of ``script`` without their ``;``; chunks holding only comments are dropped."""
    statements: list[str] = []
    start, i, has_sql = 0, 0, False
    while i < len(script):
        if script[i] == ";":
            if has_sql:
                statements.append(script[start:i].strip())
            start, i, has_sql = i + 1, i + 1, False
            continue
        i, is_sql = _skip_token(script, i)
        has_sql = has_sql or is_sql
    if has_sql:
        statements.append(script[start:].strip())
    return statements


def execute_sql_file(name: str) -> None:
    """Execute every statement of the packaged SQL file ``name`` in the migration's transaction."""
    context = op.get_context()
    statements = split_statements(read_sql(name))
    if context.as_sql:
        for statement in statements:
            context.impl.static_output(statement + context.impl.command_terminator)
        return
    driver = op.get_bind().connection.driver_connection
    if driver is None:
        raise RuntimeError("the migration connection is closed")
    for statement in statements:
        driver.execute(statement)
