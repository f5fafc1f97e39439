"""The Redis ACL of the service: the keys it names and the commands it sends, from the settings.

``finally-indexer check-config`` prints :func:`acl_setuser_line` for ops to paste into
``redis-cli`` (the password as a placeholder unless ``--acl-password-hash`` asks for its hash); the ACL test creates its user from :func:`acl_rules`, runs the pipeline as that
user and checks that Redis logged no refusal. A new kind of key is one more function in
:data:`KEY_SOURCES`; a new command is one more entry in :data:`COMMANDS`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Final

from finally_indexer.core import constants as c
from finally_indexer.core.settings import Settings
from finally_indexer.processor.audit import audit_lock_key
from finally_indexer.processor.breaker import board_key
from finally_indexer.processor.consume import FailureMemory

__all__ = [
    "COMMANDS",
    "DEFAULT_ACL_USER",
    "KEY_SOURCES",
    "PASSWORD_PLACEHOLDER",
    "acl_rules",
    "acl_setuser_line",
    "exact",
    "key_patterns",
    "password_rule",
]

#: The user name when ``REDIS_USERNAME`` is not set.
DEFAULT_ACL_USER: Final = "finally-indexer"

#: The password part of a printed line, for ops to replace: ``>`` then the clear password (or
#: ``#`` then its SHA-256). Not a password: Redis would take it as one, so the line says so.
PASSWORD_PLACEHOLDER: Final = "><password>"  # noqa: S105

#: Every command the bridge, the workers, the API and the CLI send (Lua scripts included: Redis
#: checks the commands a script calls, and the keys it declares, against the ACL).
COMMANDS: Final = (
    # connection: PING for health, TIME for housekeeping (CLIENT SETINFO: see SETINFO_SINCE)
    "ping", "time",
    # the legacy list (the scraper LPUSHes; the bridge moves; /status counts)
    "lpush", "llen", "blmove", "rpop",
    # the streams and their consumer groups
    "xadd", "xreadgroup", "xack", "xautoclaim", "xclaim", "xpending", "xrange", "xlen", "xtrim",
    "xgroup|create", "xgroup|delconsumer",
    "xinfo|groups", "xinfo|consumers", "xinfo|stream",
    # the failure memory (a hash per work stream), the breaker board, the embedding budget
    "hset", "hsetnx", "hincrby", "hdel", "hmget", "hgetall",
    # the audit lock (redis-py's Lock: SET NX PX, then Lua scripts over GET/DEL/PEXPIRE/PTTL)
    "set", "get", "del", "pexpire", "pttl",
    # Lua scripts (the bridge's move, the heartbeat, the lock, rate budgets) and transactions
    "eval", "evalsha", "script|load", "multi", "exec", "discard",
)  # fmt: skip

#: redis-py and FastStream send ``CLIENT SETINFO`` on every connection (its refusal is ignored,
#: but logged in ``ACL LOG``); Redis knows the subcommand, and accepts it in a rule, from 7.2 on.
SETINFO_SINCE: Final = (7, 2)

_GLOB_SPECIAL: Final = re.compile(r"([*?\[\]\\])")


def exact(key: str) -> str:
    """An ACL key pattern matching ``key`` and nothing else (glob characters escaped)."""
    return _GLOB_SPECIAL.sub(r"\\\1", key)


def _queues(settings: Settings) -> Iterable[str]:
    """The legacy list and the four streams."""
    keys = (settings.legacy_list, settings.jobs_stream, settings.batch_stream, settings.events_stream,
            settings.dead_letter_stream)  # fmt: skip
    return [exact(key) for key in keys]


def _failure_memory(settings: Settings) -> Iterable[str]:
    """The failure hashes of the two work streams."""
    return [exact(FailureMemory.key(stream)) for stream in (settings.jobs_stream, settings.batch_stream)]


def _audit_lock(settings: Settings) -> Iterable[str]:
    return [exact(audit_lock_key(settings))]


def _breaker_board(settings: Settings) -> Iterable[str]:
    """Where workers report their open breakers (read by ``/health``)."""
    return [exact(board_key(settings.jobs_stream))]


def _embedding_budget(settings: Settings) -> Iterable[str]:
    """The shared rate budgets: one hash per API key digest and model."""
    return [f"{exact(c.EMBEDDING_BUDGET_PREFIX)}:*"]


#: Where the key patterns come from; each function names one family of keys.
KEY_SOURCES: Final[tuple[Callable[[Settings], Iterable[str]], ...]] = (
    _queues,
    _failure_memory,
    _audit_lock,
    _breaker_board,
    _embedding_budget,
)


def key_patterns(settings: Settings) -> list[str]:
    """Every key pattern the service needs, without duplicates, in a stable order."""
    return list(dict.fromkeys(pattern for source in KEY_SOURCES for pattern in source(settings)))


def password_rule(settings: Settings, *, hashed: bool = False) -> str:
    """The password part of the rules: ``#<sha256>`` of ``REDIS_PASSWORD`` when ``hashed`` (and it
    is set), else :data:`PASSWORD_PLACEHOLDER`.

    The hash is unsalted: anyone who reads it can try guesses offline at GPU speed, so it is only
    made on request and never by default (a printed line ends up in terminals, CI logs, tickets).
    """
    if not hashed or settings.redis_password is None:
        return PASSWORD_PLACEHOLDER
    return "#" + hashlib.sha256(settings.redis_password.get_secret_value().encode()).hexdigest()


def acl_rules(
    settings: Settings, *, server: tuple[int, int] = SETINFO_SINCE, hashed_password: bool = False
) -> list[str]:
    """The arguments of ``ACL SETUSER <user>``: reset, on, the password, the keys, the commands.

    ``server`` is the Redis version (major, minor) the rules are for (default: 7.2 or later); the
    password part is :func:`password_rule`'s.
    """
    keys = [f"~{pattern}" for pattern in key_patterns(settings)]
    commands = [f"+{command}" for command in COMMANDS]
    if server >= SETINFO_SINCE:
        commands.append("+client|setinfo")
    password = password_rule(settings, hashed=hashed_password)
    return ["reset", "on", password, "resetchannels", *keys, "-@all", *commands]


def acl_setuser_line(
    settings: Settings, *, server: tuple[int, int] = SETINFO_SINCE, hashed_password: bool = False
) -> str:
    """``ACL SETUSER`` for the service's user, one line, to paste into ``redis-cli``."""
    user = settings.redis_username or DEFAULT_ACL_USER
    rules = acl_rules(settings, server=server, hashed_password=hashed_password)
    return " ".join(["ACL", "SETUSER", user, *rules])
