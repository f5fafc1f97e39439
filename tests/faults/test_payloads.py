"""The poison fault's payloads are what they claim: every bad one is refused by the legacy contract,
every valid one is a job, and every kind of bad payload is drawn (``faultlab.payloads``)."""

from __future__ import annotations

from faultlab.lab import PAYLOAD_MAX_BYTES
from faultlab.payloads import BAD_KINDS, bad_payloads, mixed_payloads, valid_jobs

from finally_indexer.core.errors import MalformedJob
from finally_indexer.schemas.messages import read_job


def _refusal(raw: bytes) -> str | None:
    """The reason the contract refuses ``raw`` for, or None when it is a job."""
    try:
        read_job({b"payload": raw, b"source": b"legacy"}, "1-1", max_bytes=PAYLOAD_MAX_BYTES)
    except MalformedJob as exc:
        return str(exc.reason)
    return None


def test_every_generated_bad_payload_is_refused_and_every_kind_is_drawn() -> None:
    drawn = bad_payloads(1_500, seed=3, max_bytes=PAYLOAD_MAX_BYTES)

    accepted = [(kind, raw[:80]) for kind, raw in drawn if _refusal(raw) is None]

    assert accepted == []
    assert {kind for kind, _ in drawn} == set(BAD_KINDS)
    reasons = {_refusal(raw) for _, raw in drawn}
    assert {"too_deep", "payload_too_large", "bad_text", "not_utf8", "bad_json"} <= reasons


def test_valid_jobs_with_odd_extras_are_jobs() -> None:
    jobs = valid_jobs(50, seed=3, listings=100)

    assert [_refusal(raw) for _, raw in jobs] == [None] * 50
    assert len({job_id for job_id, _ in jobs}) == 50


def test_the_mix_is_reproducible_and_holds_what_it_says() -> None:
    first, ids = mixed_payloads(200, 10, seed=5, max_bytes=PAYLOAD_MAX_BYTES, listings=100)
    again, _ = mixed_payloads(200, 10, seed=5, max_bytes=PAYLOAD_MAX_BYTES, listings=100)

    assert first == again
    assert len(first) == 210
    assert sum(_refusal(raw) is None for raw in first) == len(ids) == 10
