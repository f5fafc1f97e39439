"""Dry runs: what a job would embed, skip and delete, its tokens, requests, US dollars and duration.

Nothing is queued or written. The job's listings are read in keyset pages (1M listings are a few
hundred pages, never all in memory), rendered exactly as the indexer renders them
(:mod:`.texts`), and judged as the indexer judges them: unchanged when the text's hash and the
embedder's model are what ``index_state`` records writing (PostgreSQL is the record; the indexer
asks the store, which agrees with it unless the index drifted — that is the audit's business).
The texts to embed are measured with the embedder's own tokenizer and per-input truncation
(:func:`~.embedders.batching.plan_batches`), and each batch's requests counted as the indexer
counts them (:mod:`.cost`), so the estimate and the real run's accounting agree.

Tokens are the model's own unit: cl100k tokens for OpenAI; characters for the offline embedder,
which bills nothing (its jobs record 0 tokens).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import asyncpg
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.db import products
from finally_indexer.db.pool import DB
from finally_indexer.processor.cost import Usage, expected_duration_s, requests_needed, usd
from finally_indexer.processor.embedders.batching import plan_batches
from finally_indexer.processor.embedders.factory import budget_limits, build_embedder
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.texts import build_text, text_hash
from finally_indexer.schemas.jobs import Job, Operation

__all__ = ["DryRun", "Estimate", "Tally", "dry_run"]

#: Listings read per keyset page (rounded down to whole batches): a few MB of rows at a time.
PAGE_LISTINGS: Final = 2_048


@dataclass(frozen=True, slots=True)
class Tally:
    """What the listings judged so far would cost."""

    listings: int = 0
    embed: int = 0
    skip: int = 0
    delete: int = 0
    fail: int = 0
    usage: Usage = field(default_factory=Usage)

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.listings + other.listings, self.embed + other.embed, self.skip + other.skip,
            self.delete + other.delete, self.fail + other.fail, self.usage + other.usage,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Estimate:
    """A dry run's answer."""

    tally: Tally
    model: str
    usd_per_million_tokens: float
    usd: float
    duration_s: float | None  # None: the rate budget is not known
    tokens_per_minute: int  # the budget the duration assumes (0: unknown)
    requests_per_minute: int


class DryRun:
    """Estimates jobs against PostgreSQL with one embedder's tokenizer, limits and price."""

    def __init__(
        self, *, embedder: Embedder, text_template: str, batch_size: int, usd_per_million_tokens: float
    ) -> None:
        self._embedder = embedder
        self._template = text_template
        self._batch_size = batch_size
        self._price = usd_per_million_tokens
        self._page = max(1, PAGE_LISTINGS // batch_size) * batch_size  # pages hold whole batches

    async def estimate(self, db: DB, job: Job, *, tpm: int = 0, rpm: int = 0) -> Estimate:
        """What ``job`` would do, and how long it would take at ``tpm``/``rpm`` (0: unknown)."""
        if job.operation is Operation.DELETE:
            ids = job.product_ids or []
            tally = Tally(listings=len(ids), delete=len(ids))
        elif job.product_ids is not None:
            tally = await self._listed(db, job.product_ids, force=job.force)
        else:
            tally = await self._scanned(db, changed=job.scope == "changed", force=job.force)
            orphans = await products.count_orphans(db)
            tally += Tally(listings=orphans, delete=orphans)
        return Estimate(
            tally=tally, model=self._embedder.model, usd_per_million_tokens=self._price,
            usd=usd(tally.usage.tokens, self._price),
            duration_s=expected_duration_s(tally.usage, tpm=tpm, rpm=rpm),
            tokens_per_minute=tpm, requests_per_minute=rpm,
        )  # fmt: skip

    async def _listed(self, db: DB, ids: Sequence[int], *, force: bool) -> Tally:
        """A list of ids, in the planner's batches; an id without a row would be deleted."""
        tally = Tally()
        for start in range(0, len(ids), self._page):
            page = ids[start : start + self._page]
            rows = await products.fetch_listings_with_state(db, page)
            batches = [
                [rows[i] for i in page[at : at + self._batch_size] if i in rows]
                for at in range(0, len(page), self._batch_size)
            ]
            tally += Tally(listings=len(page) - len(rows), delete=len(page) - len(rows))
            tally += await asyncio.to_thread(self._judge, batches, force)
        return tally

    async def _scanned(self, db: DB, *, changed: bool, force: bool) -> Tally:
        """Every listing (or every changed one), page by page, in the planner's batches."""
        tally, after = Tally(), 0
        while rows := await products.scan_listings_with_state(
            db, after=after, limit=self._page, changed=changed
        ):
            after = int(rows[-1]["id"])
            batches = [rows[at : at + self._batch_size] for at in range(0, len(rows), self._batch_size)]
            # rendering and tokenizing a page is CPU work: off the event loop
            tally += await asyncio.to_thread(self._judge, batches, force)
        return tally

    def _judge(self, batches: Sequence[Sequence[asyncpg.Record]], force: bool) -> Tally:
        """Each listing embedded, skipped or failed as the indexer would; each batch's usage."""
        tally = Tally()
        for batch in batches:
            texts: list[str] = []
            skipped = failed = 0
            for row in batch:
                if row["updated_at"] is None:  # the indexer fails a row without a write version
                    failed += 1
                    continue
                text = build_text(dict(row), self._template)
                unchanged = (
                    row["indexed_hash"] == text_hash(text) and row["indexed_model"] == self._embedder.model
                )
                if unchanged and not force:
                    skipped += 1
                else:
                    texts.append(text)
            tokens = sum(b.tokens for b in plan_batches(texts, self._embedder.limits, self._embedder))
            requests = requests_needed(len(texts), tokens, self._embedder.limits)
            tally += Tally(len(batch), len(texts), skipped, 0, failed, Usage(tokens, requests))
        return tally


async def dry_run(db: DB, settings: Settings, job: Job, *, redis: Redis | None = None) -> Estimate:
    """``job`` estimated with the configured embedder's tokenizer, limits and price (no request is sent).

    The duration assumes the rate budget of the configured key and model (settings, else learned
    from the API's headers into ``redis``); without one known, there is no duration.
    """
    tpm, rpm = (0, 0) if redis is None else await budget_limits(settings, redis)
    embedder = build_embedder(settings)
    try:
        estimator = DryRun(
            embedder=embedder, text_template=settings.text_template, batch_size=settings.batch_size,
            usd_per_million_tokens=settings.usd_per_million_tokens(embedder.model),
        )  # fmt: skip
        return await estimator.estimate(db, job, tpm=tpm, rpm=rpm)
    finally:
        await embedder.aclose()
