"""Synthetic used-motorbike listings: a deterministic generator and a fast ``COPY`` loader.

``generate_listings(count, seed)`` is pure: everything comes from one ``random.Random(seed)``,
so the same arguments give the same rows, and a longer run starts with the rows of a shorter
one. Prices follow the model's price when new, its age and its mileage; mileage follows age and
kind (a delivery scooter runs far more than a sports bike). The words come from
``demo_data.py``. A few posts are very long; a few have no body, no photo or no price (가격협의).

``seed_demo(pool, count=...)`` loads them into ``products`` with ``COPY`` in one transaction
(30,000 rows in about a second).
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate, islice
from typing import Any, Final

import asyncpg
import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from finally_indexer.db.demo_data import (
    ACCIDENTS,
    CATALOG,
    REGIONS,
    TUNING,
    BikeFacts,
    BikeModel,
    pick,
    render_body,
    render_title,
)

__all__ = ["COLUMNS", "MAX_YEAR", "MIN_YEAR", "DemoListing", "generate_listings", "seed_demo"]

log = structlog.get_logger(__name__)

MIN_YEAR: Final = 2008
MAX_YEAR: Final = 2025

#: The ``products`` columns a listing fills, in ``DemoListing.as_record`` order.
COLUMNS: Final = (
    "title", "url", "img_url", "price", "content", "odo", "mileage", "brand", "year", "created_at", "updated_at",
)  # fmt: skip

#: Rows per ``COPY``: large enough that the round trips do not matter, small enough for a
#: progress bar that moves (30k rows = 6 chunks).
COPY_CHUNK: Final = 5_000

_CUM_WEIGHTS: Final = tuple(accumulate(model.weight for model in CATALOG))
#: Share of the value kept per year of age, and kilometres ridden a year, by kind of bike.
_RETENTION: Final = {
    "scooter": 0.85, "cub": 0.88, "naked": 0.86, "sport": 0.85,
    "adventure": 0.87, "cruiser": 0.88, "touring": 0.87, "classic": 0.89,
}  # fmt: skip
_KM_PER_YEAR: Final = {
    "scooter": 7_000, "cub": 9_000, "naked": 4_000, "sport": 3_500,
    "adventure": 7_000, "cruiser": 3_000, "touring": 6_000, "classic": 3_000,
}  # fmt: skip
#: A delivery bike (배달용) runs several times the usual distance.
_DELIVERY_KM_PER_YEAR: Final = 28_000
#: The oldest bikes still sell for about this share of their price when new.
_MIN_RETAINED: Final = 0.18
_MAX_MILEAGE: Final = 180_000
#: Listing numbers in the demo URLs; spaced by 10 so they look like a busy marketplace's.
_LISTING_NO_BASE: Final = 3_100_000
_YEAR_S: Final = 365 * 86_400


@dataclass(frozen=True, slots=True)
class DemoListing:
    """One synthetic row of ``products`` (without ``id`` and ``is_conversion``), and its model name."""

    title: str
    url: str
    img_url: str | None
    price: int | None
    content: str | None
    odo: int | None
    mileage: int
    brand: str
    year: int
    created_at: datetime
    updated_at: datetime
    model: str

    def as_record(self) -> tuple[object, ...]:
        """The values in ``COLUMNS`` order, for ``COPY``."""
        return (
            self.title, self.url, self.img_url, self.price, self.content, self.odo,
            self.mileage, self.brand, self.year, self.created_at, self.updated_at,
        )  # fmt: skip


def _pick_year(rng: random.Random, model: BikeModel, today: date) -> int:
    low = max(model.first_year, MIN_YEAR)
    high = max(low, min(model.last_year, MAX_YEAR, today.year))
    # the used market leans towards recent years
    return min(high, int(rng.triangular(low, high + 1, high + 1)))


def _pick_mileage(rng: random.Random, model: BikeModel, age: float, delivery: bool) -> int:
    per_year = _DELIVERY_KM_PER_YEAR if delivery else _KM_PER_YEAR[model.kind]
    km = age * per_year * rng.lognormvariate(0.0, 0.45)
    return max(30, min(int(km), _MAX_MILEAGE))


def _pick_price(rng: random.Random, model: BikeModel, age: float, mileage: int, accident: bool) -> int:
    retained = max(_MIN_RETAINED, math.pow(_RETENTION[model.kind], age))
    expected_km = max(1.0, age * _KM_PER_YEAR[model.kind])
    wear = min(1.08, max(0.75, 1.0 - 0.08 * (mileage / expected_km - 1.0)))
    won = model.new_price * 10_000 * retained * wear * (0.85 if accident else 1.0) * rng.uniform(0.92, 1.08)
    step = 100_000 if won >= 5_000_000 and rng.random() < 0.5 else 10_000
    return max(200_000, round(won / step) * step)


def _make_bike(rng: random.Random, today: date) -> BikeFacts:
    model = CATALOG[rng.choices(range(len(CATALOG)), cum_weights=_CUM_WEIGHTS)[0]]
    year = _pick_year(rng, model, today)
    age = max(0.2, (today - date(year, 3, 1)).days / 365.25)
    delivery = model.cc <= 125 and model.kind in ("scooter", "cub") and rng.random() < 0.3
    mileage = _pick_mileage(rng, model, age, delivery)
    accident = pick(rng, ACCIDENTS) if rng.random() < 0.18 else None
    options = TUNING[model.kind]
    tuning = tuple(rng.sample(options, k=min(len(options), pick(rng, (0, 0, 1, 2, 3, 4)))))
    price: int | None = _pick_price(rng, model, age, mileage, accident is not None)
    if rng.random() < 0.04:
        price = None  # 가격협의
    return BikeFacts(model, year, mileage, delivery, accident, tuning, price, pick(rng, REGIONS), today)


def _times(rng: random.Random, now: datetime) -> tuple[datetime, datetime]:
    created = now - timedelta(seconds=rng.uniform(0, _YEAR_S))
    if rng.random() < 0.55:
        return created, created
    return created, created + (now - created) * rng.random()


def _listing(rng: random.Random, index: int, now: datetime) -> DemoListing:
    created_at, updated_at = _times(rng, now)
    bike = _make_bike(rng, created_at.date())  # the post describes the bike as it was when posted
    listing_no = _LISTING_NO_BASE + index * 10 + rng.randrange(10)
    body_roll = rng.random()
    content = None if body_roll < 0.03 else render_body(rng, bike, long=body_roll > 0.97)
    price = bike.price if bike.price is not None else pick(rng, (None, 0))
    odo = None if rng.random() < 0.25 else bike.mileage
    photo = rng.getrandbits(48)
    img_url = (
        None if rng.random() < 0.08 else f"https://img.finally.example/bikes/{listing_no}/{photo:012x}.jpg"
    )
    return DemoListing(
        title=render_title(rng, bike),
        url=f"https://market.finally.example/bikes/{listing_no}",
        img_url=img_url,
        price=price,
        content=content,
        odo=odo,
        mileage=bike.mileage,
        brand=bike.model.brand,
        year=bike.year,
        created_at=created_at,
        updated_at=updated_at,
        model=bike.model.name,
    )


def generate_listings(count: int, seed: int, *, now: datetime | None = None) -> Iterator[DemoListing]:
    """Yield ``count`` listings drawn from ``random.Random(seed)``; the same arguments give the same rows.

    Timestamps spread over the year before ``now`` (default: today's midnight UTC, so a seed
    gives the same rows all day).
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    anchor = now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets; seeded for determinism
    for index in range(count):
        yield _listing(rng, index, anchor)


def _next_chunk(listings: Iterator[DemoListing]) -> list[tuple[object, ...]]:
    return [listing.as_record() for listing in islice(listings, COPY_CHUNK)]


def _progress(enabled: bool) -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn("seeding demo listings"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not (enabled and console.is_terminal and sys.stderr.isatty()),
        transient=True,
    )


async def seed_demo(pool: asyncpg.Pool[Any], *, count: int, seed: int = 42, progress: bool = True) -> int:
    """Insert ``count`` generated listings into ``products`` with ``COPY``; return the rows inserted.

    One transaction: either every row is there or none. ``progress`` shows a bar on a terminal.
    """
    listings = generate_listings(count, seed)
    inserted = 0
    with _progress(progress) as bar:
        task = bar.add_task("seed", total=count)
        async with pool.acquire() as conn, conn.transaction():
            # generating is CPU work (~50 µs a row): off the event loop, one chunk at a time
            while chunk := await asyncio.to_thread(_next_chunk, listings):
                await conn.copy_records_to_table("products", records=chunk, columns=COLUMNS)
                inserted += len(chunk)
                bar.update(task, completed=inserted)
    log.info("demo_seeded", rows=inserted, seed=seed)
    return inserted
