"""The command line turns known failures into a message and an exit code, even inside task groups."""

from __future__ import annotations

import pytest

from finally_indexer.core.cli import EXIT_CONFIG, EXIT_FAILURE, _exit_code
from finally_indexer.core.errors import BrokerUnrecoverable, ConfigurationError


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (ConfigurationError("OPENAI_API_KEY is wrong"), EXIT_CONFIG, "OPENAI_API_KEY is wrong"),
        (ExceptionGroup("roles", [ConfigurationError("VECTOR_SIZE")]), EXIT_CONFIG, "VECTOR_SIZE"),
        (
            ExceptionGroup(
                "roles", [ExceptionGroup("worker", [BrokerUnrecoverable("groups keep vanishing")])]
            ),
            EXIT_FAILURE,
            "error: groups keep vanishing",
        ),
    ],
)
def test_known_failures_exit_with_a_message(
    error: Exception, code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(error) == code
    assert message in capsys.readouterr().err


def test_anything_else_still_raises() -> None:
    with pytest.raises(ExceptionGroup):
        _exit_code(ExceptionGroup("roles", [RuntimeError("a bug"), RuntimeError("another")]))
    with pytest.raises(KeyError):
        _exit_code(KeyError("x"))
