"""Stream entries survive the trip through Redis's flat string fields."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st

from finally_indexer.schemas.jobs import JobSource, Operation
from finally_indexer.schemas.messages import BatchMessage, Event, EventType, JobEntry


def _as_redis_returns(fields: Mapping[str, bytes | str]) -> dict[bytes, bytes]:
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}


@given(st.binary(max_size=300), st.sampled_from(list(JobSource)))
def test_job_entry_keeps_raw_payload_bytes(payload: bytes, source: JobSource) -> None:
    entry = JobEntry(payload=payload, source=source, received_ms=1_700_000_000_123)
    back = JobEntry.from_fields(_as_redis_returns(entry.to_fields()))
    assert back == entry


@given(
    st.sampled_from(list(Operation)),
    st.lists(st.integers(min_value=1, max_value=2**63 - 1), min_size=1, max_size=100),
    st.booleans(),
)
def test_batch_message_round_trip(operation: Operation, ids: list[int], force: bool) -> None:
    msg = BatchMessage(
        job_id="job-1", seq=3, operation=operation, product_ids=ids, force=force, received_ms=5
    )
    assert BatchMessage.from_fields(_as_redis_returns(msg.to_fields())) == msg


def test_event_round_trip_omits_empty_optionals() -> None:
    event = Event(type=EventType.BATCH_INDEXED, job_id="j", seq=0, product_ids=[1, 2], counts={"indexed": 2})
    fields = event.to_fields()
    assert "reason" not in fields["event"]
    assert Event.from_fields(_as_redis_returns(fields)) == event
