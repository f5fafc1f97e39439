"""Legacy payloads for the poison fault: bad ones of every kind, and valid jobs with odd extras.

A seeded generator (``random.Random(seed)``), so a run is reproducible and cheap at 10,000
payloads. Every kind of bad payload is bad *by construction* (the legacy contract refuses it:
``schemas/legacy.py``); ``tests/faults/test_payloads.py`` checks that against the parser. The
valid jobs carry what the contract tolerates but a careless store would not (NUL and lone
surrogates in extra fields): they must complete like any other job.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any, Final

__all__ = ["BAD_KINDS", "bad_payloads", "mixed_payloads", "valid_jobs"]

#: Python's ``int`` refuses to parse more digits than this (CVE-2020-10735): one digit more.
_INT_DIGITS_LIMIT: Final = 4300


def _job(**fields: Any) -> bytes:
    return json.dumps({"operation": "sync", "product_ids": [1, 2, 3]} | fields).encode()


def _deep_array(rng: random.Random, _: int) -> bytes:
    n = rng.randint(1_000, 20_000)
    return b"[" * n + b"]" * n


def _deep_object(rng: random.Random, _: int) -> bytes:
    n = rng.randint(1_000, 5_000)
    return b'{"a":' * n + b"1" + b"}" * n


def _deep_ids(rng: random.Random, _: int) -> bytes:
    n = rng.randint(600, 5_000)
    return b'{"operation":"sync","product_ids":' + b"[" * n + b"1" + b"]" * n + b"}"


def _huge_int(rng: random.Random, _: int) -> bytes:
    digits = "7" * rng.randint(_INT_DIGITS_LIMIT + 1, 3 * _INT_DIGITS_LIMIT)
    return b'{"operation":"sync","product_ids":[1,' + digits.encode() + b"]}"


def _big_id(rng: random.Random, _: int) -> bytes:
    return _job(product_ids=[rng.choice([2**63, 2**64 + 1, 10**30, -(2**63) - 1])])


def _nul(rng: random.Random, _: int) -> bytes:
    field = rng.choice(["job_id", "requested_by", "operation"])
    return _job(**{field: rng.choice(["\x00", "a\x00b", "sync\x00"])})


def _raw_nul(rng: random.Random, _: int) -> bytes:
    # a raw NUL byte inside a JSON string: not JSON at all
    return b'{"operation":"sync","product_ids":[1],"job_id":"a' + b"\x00" * rng.randint(1, 3) + b'"}'


def _surrogate(rng: random.Random, _: int) -> bytes:
    field = rng.choice(["job_id", "requested_by", "operation"])
    return _job(**{field: rng.choice(["\ud800", "x\udfff", "\udbff\udbff"])})


def _not_utf8(rng: random.Random, _: int) -> bytes:
    return b'{"operation":"sync","product_ids":[1],"job_id":"' + bytes([0xFF, 0xFE, 0xC3]) + b'"}'


def _binary(rng: random.Random, _: int) -> bytes:
    # never valid JSON: starts with a byte no JSON text starts with
    return b"\x01" + rng.randbytes(rng.randint(0, 200))


def _truncated(rng: random.Random, _: int) -> bytes:
    whole = _job(job_id=f"cut-{rng.randrange(10**6)}")
    return whole[: rng.randint(0, len(whole) - 1)]


_WRONG_SHAPES: Final[list[Any]] = [
    [],
    [{"operation": "sync", "product_ids": [1]}],
    "sync",
    42,
    None,
    True,
    {},
    {"operation": "sync"},
    {"product_ids": [1]},
    {"operation": 5, "product_ids": [1]},
    {"operation": "SYNC", "product_ids": [1]},
    {"operation": "reindex-all", "product_ids": [1]},
    {"operation": ["sync"], "product_ids": [1]},
    {"operation": "sync", "product_ids": "some"},
    {"operation": "sync", "product_ids": {}},
    {"operation": "sync", "product_ids": []},
    {"operation": "sync", "product_ids": None},
    {"operation": "sync", "product_ids": ["1"]},
    {"operation": "sync", "product_ids": [1.5]},
    {"operation": "sync", "product_ids": [0]},
    {"operation": "sync", "product_ids": [-4]},
    {"operation": "sync", "product_ids": [True]},
    {"operation": "sync", "product_ids": [[1]]},
    {"operation": "sync", "product_ids": [1], "v": "one"},
    {"operation": "sync", "product_ids": [1], "force": "yes"},
]


def _wrong_shape(rng: random.Random, _: int) -> bytes:
    return json.dumps(rng.choice(_WRONG_SHAPES)).encode()


def _oversize(rng: random.Random, max_bytes: int) -> bytes:
    pad = "x" * (max_bytes + rng.randint(1, max_bytes))
    return _job(requested_by="scraper", notes=pad)


def _too_many_ids(rng: random.Random, _: int) -> bytes:
    ids = [1] * rng.randint(100_001, 100_100)  # ~200 KB compact: under a 256 KiB cap
    return json.dumps({"operation": "sync", "product_ids": ids}, separators=(",", ":")).encode()


def _empty(rng: random.Random, _: int) -> bytes:
    return rng.choice([b"", b" ", b"\n", b"null"])


#: Every kind of bad payload with its weight (how often it is drawn): heavy ones are rare.
BAD_KINDS: Final[dict[str, tuple[Callable[[random.Random, int], bytes], int]]] = {
    "deep_array": (_deep_array, 4),
    "deep_object": (_deep_object, 4),
    "deep_ids": (_deep_ids, 4),
    "huge_int": (_huge_int, 6),
    "big_id": (_big_id, 6),
    "nul": (_nul, 10),
    "raw_nul": (_raw_nul, 6),
    "surrogate": (_surrogate, 10),
    "not_utf8": (_not_utf8, 6),
    "binary": (_binary, 10),
    "truncated": (_truncated, 10),
    "wrong_shape": (_wrong_shape, 20),
    "oversize": (_oversize, 1),
    "too_many_ids": (_too_many_ids, 1),
    "empty": (_empty, 2),
}


def bad_payloads(n: int, *, seed: int, max_bytes: int) -> list[tuple[str, bytes]]:
    """``n`` bad payloads as (kind, bytes), kinds drawn by weight; ``max_bytes`` is the size cap."""
    rng = random.Random(seed)
    kinds = list(BAD_KINDS)
    weights = [BAD_KINDS[k][1] for k in kinds]
    drawn = rng.choices(kinds, weights, k=n)
    return [(kind, BAD_KINDS[kind][0](rng, max_bytes)) for kind in drawn]


def valid_jobs(n: int, *, seed: int, listings: int) -> list[tuple[str, bytes]]:
    """``n`` valid sync jobs as (job id, bytes) over listings ``1..listings``; some carry odd extras."""
    rng = random.Random(seed)
    odd_extras: list[dict[str, Any]] = [
        {},
        {"note": "a\x00b"},
        {"note": "\ud800"},
        {"meta": {"deep": [[["x"]]], "nul": "\x00"}},
        {"v": 1, "requested_by": 12345},
    ]
    jobs = []
    for k in range(n):
        job_id = f"valid-{k}"
        ids = rng.sample(range(1, listings + 1), min(listings, rng.randint(1, 20)))
        job = {"operation": "sync", "product_ids": ids, "job_id": job_id} | rng.choice(odd_extras)
        jobs.append((job_id, json.dumps(job).encode()))
    return jobs


def mixed_payloads(
    bad: int, valid: int, *, seed: int, max_bytes: int, listings: int
) -> tuple[list[bytes], list[str]]:
    """``bad`` bad payloads and ``valid`` valid jobs, shuffled; and the ids of the valid jobs."""
    good = valid_jobs(valid, seed=seed, listings=listings)
    everything = [raw for _, raw in bad_payloads(bad, seed=seed, max_bytes=max_bytes)]
    everything += [raw for _, raw in good]
    random.Random(seed).shuffle(everything)
    return everything, [job_id for job_id, _ in good]
