"""The legacy job contract: every shape the scraper sends, and every malformed shape, with its reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finally_indexer.core.constants import MAX_IDS_PER_JOB
from finally_indexer.core.errors import MalformedJob
from finally_indexer.schemas.jobs import Operation
from finally_indexer.schemas.legacy import LegacyJob, MalformedReason, parse_legacy_job


@pytest.mark.parametrize(
    ("payload", "operation", "ids"),
    [
        ({"operation": "sync", "product_ids": [1, 2, 3]}, Operation.SYNC, [1, 2, 3]),
        ({"operation": "sync", "product_ids": "all"}, Operation.SYNC, "all"),
        ({"operation": "update", "product_ids": [123]}, Operation.UPDATE, [123]),
        ({"operation": "delete", "product_ids": [77]}, Operation.DELETE, [77]),
    ],
)
def test_the_seed_examples_parse(payload: dict[str, object], operation: Operation, ids: object) -> None:
    job = parse_legacy_job(json.dumps(payload).encode())
    assert job.operation is operation
    assert job.product_ids == ids


def test_extra_fields_are_tolerated_and_kept() -> None:
    raw = json.dumps(
        {
            "operation": "sync",
            "product_ids": [5],
            "v": 2,
            "job_id": "j-1",
            "requested_by": "cron",
            "trace": "x",
        }
    )
    job = parse_legacy_job(raw)
    assert (job.v, job.job_id, job.requested_by) == (2, "j-1", "cron")
    assert job.model_extra == {"trace": "x"}


@pytest.mark.parametrize(
    ("extras", "job_id", "requested_by"),
    [
        ({"job_id": 123}, "123", None),
        ({"job_id": "x" * 500, "requested_by": {"team": "scraper"}}, "x" * 200, '{"team":"scraper"}'),
        ({"job_id": None, "requested_by": True}, None, "true"),
        ({"job_id": ["a", 1]}, '["a",1]', None),
    ],
)
def test_optional_extras_of_any_type_are_tolerated(
    extras: dict[str, object], job_id: str | None, requested_by: str | None
) -> None:
    job = parse_legacy_job(json.dumps({"operation": "sync", "product_ids": [1], **extras}))
    assert (job.job_id, job.requested_by) == (job_id, requested_by)


def test_duplicate_ids_are_collapsed_in_order() -> None:
    assert parse_legacy_job('{"operation":"sync","product_ids":[3,1,3,2,1]}').product_ids == [3, 1, 2]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{not utf8", MalformedReason.NOT_UTF8),
        (b'{"operation": "sync", "product_ids": [1,', MalformedReason.BAD_JSON),
        (b"", MalformedReason.BAD_JSON),
        (b"[1, 2, 3]", MalformedReason.NOT_AN_OBJECT),
        (b'"sync"', MalformedReason.NOT_AN_OBJECT),
        (b"null", MalformedReason.NOT_AN_OBJECT),
        (b'{"operation": "reindex", "product_ids": [1]}', MalformedReason.UNKNOWN_OPERATION),
        (b'{"operation": 1, "product_ids": [1]}', MalformedReason.UNKNOWN_OPERATION),
        (b'{"product_ids": [1]}', MalformedReason.UNKNOWN_OPERATION),
        (b'{"operation": "sync"}', MalformedReason.BAD_PRODUCT_IDS),
        (b'{"operation": "sync", "product_ids": "some"}', MalformedReason.BAD_PRODUCT_IDS),
        (b'{"operation": "sync", "product_ids": ["1", "2"]}', MalformedReason.BAD_PRODUCT_IDS),
        (b'{"operation": "sync", "product_ids": [1.5]}', MalformedReason.BAD_PRODUCT_IDS),
        (b'{"operation": "sync", "product_ids": [true]}', MalformedReason.BAD_PRODUCT_IDS),
        (b'{"operation": "sync", "product_ids": [0]}', MalformedReason.BAD_PRODUCT_IDS),
        (b'{"operation": "sync", "product_ids": [-4]}', MalformedReason.BAD_PRODUCT_IDS),
        (b'{"operation": "sync", "product_ids": [9223372036854775808]}', MalformedReason.BAD_PRODUCT_IDS),
        (b'{"operation": "sync", "product_ids": 7}', MalformedReason.BAD_PRODUCT_IDS),
        (b'{"operation": "sync", "product_ids": []}', MalformedReason.EMPTY_PRODUCT_IDS),
        (b'{"operation": "sync", "product_ids": [1], "v": "two"}', MalformedReason.INVALID),
    ],
)
def test_malformed_shapes_are_rejected_with_a_reason(raw: bytes, reason: MalformedReason) -> None:
    with pytest.raises(MalformedJob) as info:
        parse_legacy_job(raw)
    assert info.value.reason == reason
    assert info.value.detail  # a readable explanation for the operator


def test_oversized_id_list_is_rejected() -> None:
    raw = json.dumps({"operation": "sync", "product_ids": list(range(1, MAX_IDS_PER_JOB + 2))})
    with pytest.raises(MalformedJob) as info:
        parse_legacy_job(raw)
    assert info.value.reason == MalformedReason.TOO_MANY_PRODUCT_IDS


@given(st.binary(max_size=200))
def test_any_bytes_either_parse_or_raise_malformed(raw: bytes) -> None:
    try:
        job = parse_legacy_job(raw)
    except MalformedJob as exc:
        assert exc.reason in set(MalformedReason)
    else:
        assert isinstance(job, LegacyJob)


@given(
    st.sampled_from(["sync", "update", "delete"]),
    st.lists(st.integers(min_value=1, max_value=2**63 - 1), min_size=1, max_size=50),
)
def test_valid_jobs_round_trip(operation: str, ids: list[int]) -> None:
    job = parse_legacy_job(json.dumps({"operation": operation, "product_ids": ids}))
    assert job.product_ids == list(dict.fromkeys(ids))
    assert job.operation.value == operation
