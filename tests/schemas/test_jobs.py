"""One job model, one set of rules, one job-id rule — for the legacy list and the API alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from finally_indexer.core.errors import MalformedJob
from finally_indexer.schemas.api import SyncRequest
from finally_indexer.schemas.jobs import Job, JobSource, Operation, job_id_for
from finally_indexer.schemas.legacy import MalformedReason, job_from_payload

# (operation, product_ids, scope) -> the job's scope, or None when the rules refuse it
SHAPES: list[tuple[str, Any, str | None, str | None]] = [
    ("sync", "all", None, "all"),
    ("sync", "all", "changed", "changed"),
    ("sync", "all", "all", "all"),
    ("update", "all", None, "all"),  # an update of every listing is a full re-sync
    ("update", "all", "changed", "changed"),
    ("delete", "all", None, None),  # nothing deletes every listing
    ("delete", "all", "changed", None),
    ("sync", [3, 1, 3], None, "ids"),
    ("update", [5], None, "ids"),
    ("delete", [7], None, "ids"),
    ("sync", [1], "ids", "ids"),
    ("sync", [1], "changed", None),
    ("sync", "all", "ids", None),
]


def _legacy(operation: str, ids: Any, scope: str | None) -> Job:
    body: dict[str, Any] = {"operation": operation, "product_ids": ids}
    if scope is not None:
        body["scope"] = scope
    return job_from_payload(json.dumps(body).encode(), source=JobSource.LEGACY, entry_id="1-0")


def _api(operation: str, ids: Any, scope: str | None) -> Job:
    body: dict[str, Any] = {"operation": operation, "product_ids": ids}
    if scope is not None:
        body["scope"] = scope
    return SyncRequest.model_validate(body).to_job()


@pytest.mark.parametrize(("operation", "ids", "scope", "expected"), SHAPES)
def test_legacy_payloads_follow_the_job_rules(
    operation: str, ids: Any, scope: str | None, expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(MalformedJob) as caught:
            _legacy(operation, ids, scope)
        assert caught.value.reason is MalformedReason.INVALID
        return
    job = _legacy(operation, ids, scope)
    assert (job.operation, job.scope) == (Operation(operation), expected)
    assert job.product_ids == (None if ids == "all" else list(dict.fromkeys(ids)))


@pytest.mark.parametrize(("operation", "ids", "scope", "expected"), SHAPES)
def test_api_requests_follow_the_same_rules(
    operation: str, ids: Any, scope: str | None, expected: str | None
) -> None:
    if scope == "ids":  # the API has no "ids" scope: a list of ids is the scope
        return
    if ids != "all" and scope is not None:  # the API ignores scope for id lists (it chooses among all)
        assert _api(operation, ids, scope).scope == "ids"
        return
    if expected is None:
        with pytest.raises(ValidationError, match="delete needs explicit product_ids"):
            _api(operation, ids, scope)
        return
    api_default = (
        "changed" if ids == "all" and scope is None else expected
    )  # POST /sync defaults to "changed"
    assert _api(operation, ids, scope).scope == api_default


def test_legacy_and_api_refuse_the_same_product_ids() -> None:
    for bad in ([], [0], [-1], [2**63], [1.0], ["1"], [True], "ALL", None):
        with pytest.raises(MalformedJob):
            _legacy("sync", bad, None)
        with pytest.raises(ValidationError):
            SyncRequest.model_validate({"product_ids": bad})


def test_a_legacy_job_is_its_entry_and_keeps_the_producer_id_as_a_label() -> None:
    body = {"operation": "sync", "product_ids": [1], "job_id": "nightly-update"}
    job = job_from_payload(json.dumps(body).encode(), source=JobSource.LEGACY, entry_id="1700000000000-0")
    assert (job.job_id, job.external_id) == ("1700000000000-0", "nightly-update")


def test_an_api_job_keeps_its_id_through_the_stream() -> None:
    queued = SyncRequest(product_ids=[4, 5]).to_job()
    assert queued.job_id.startswith("api-")
    read_back = job_from_payload(
        json.dumps(queued.to_payload()).encode(), source=JobSource.API, entry_id="1700000000000-1"
    )
    assert read_back.job_id == queued.job_id
    assert read_back.external_id is None
    assert read_back.model_dump() == queued.model_dump()


def test_job_ids() -> None:
    assert job_id_for(JobSource.LEGACY, entry_id="5-0", given="label") == "5-0"
    assert job_id_for(JobSource.API, entry_id="5-0", given="api-1") == "api-1"
    assert job_id_for(JobSource.RETRY, entry_id="5-0") == "5-0"
    assert job_id_for(JobSource.RETRY).startswith("retry-")
    assert job_id_for(JobSource.API) != job_id_for(JobSource.API)
    with pytest.raises(ValueError, match="entry id"):
        job_id_for(JobSource.LEGACY)
