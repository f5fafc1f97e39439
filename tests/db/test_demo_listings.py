"""The demo listing generator: deterministic, Korean, plausible numbers, and the awkward cases."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finally_indexer.db.demo_data import BRANDS, CATALOG
from finally_indexer.db.seed_demo import MAX_YEAR, MIN_YEAR, DemoListing, generate_listings

NOW = datetime(2026, 6, 1, tzinfo=UTC)
HANGUL = re.compile(r"[\uac00-\ud7a3]")
MODELS = {(model.brand, model.name): model for model in CATALOG}


def _rows(count: int, seed: int = 42) -> list[DemoListing]:
    return list(generate_listings(count, seed, now=NOW))


@pytest.fixture(scope="module")
def sample() -> list[DemoListing]:
    """Enough rows that every rare case (3% long bodies, 3% empty bodies…) shows up many times."""
    return _rows(4000)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**63), count=st.integers(min_value=0, max_value=40))
def test_same_seed_same_rows(seed: int, count: int) -> None:
    assert _rows(count, seed) == _rows(count, seed)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), short=st.integers(0, 20), extra=st.integers(0, 20))
def test_a_longer_run_starts_with_a_shorter_one(seed: int, short: int, extra: int) -> None:
    assert _rows(short + extra, seed)[:short] == _rows(short, seed)


@settings(max_examples=25, deadline=None)
@given(seeds=st.lists(st.integers(min_value=0, max_value=2**32), min_size=2, max_size=2, unique=True))
def test_different_seeds_different_rows(seeds: list[int]) -> None:
    assert _rows(5, seeds[0]) != _rows(5, seeds[1])


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_every_row_is_plausible(seed: int) -> None:
    for row in _rows(30, seed):
        model = MODELS[(row.brand, row.model)]
        assert row.brand in BRANDS
        assert max(MIN_YEAR, model.first_year) <= row.year <= min(MAX_YEAR, model.last_year)
        assert 30 <= row.mileage <= 180_000
        assert row.odo in (None, row.mileage)
        if row.price:  # None or 0 means 가격협의
            assert 200_000 <= row.price <= model.new_price * 10_000 * 1.1
            assert row.price % 10_000 == 0
        assert NOW - timedelta(days=366) <= row.created_at <= row.updated_at <= NOW
        assert HANGUL.search(row.title)
        assert row.url.startswith("https://")
        assert row.img_url is None or row.img_url.endswith(".jpg")


def test_generation_does_not_touch_the_global_random() -> None:
    import random  # noqa: PLC0415

    random.seed(7)
    expected = random.random()
    random.seed(7)
    _rows(50)
    assert random.random() == expected


def test_now_defaults_to_today_so_rows_are_stable_within_a_day() -> None:
    assert list(generate_listings(10, 1)) == list(generate_listings(10, 1))


def test_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        list(generate_listings(-1, 1))


def test_urls_are_unique(sample: list[DemoListing]) -> None:
    assert len({row.url for row in sample}) == len(sample)


def test_texts_are_korean(sample: list[DemoListing]) -> None:
    bodies = [row.content for row in sample if row.content]
    assert all(HANGUL.search(body) for body in bodies)
    # marketplace vocabulary: trade terms and maintenance history appear across the sample
    joined = "\n".join(bodies)
    for word in ("직거래", "탁송", "정비", "무사고", "튜닝"):
        assert word in joined


def test_brands_cover_the_catalogue(sample: list[DemoListing]) -> None:
    assert {row.brand for row in sample} == BRANDS
    assert {"혼다", "야마하", "가와사키", "스즈키", "BMW", "할리데이비슨", "두카티", "KTM"} <= BRANDS


def test_the_awkward_cases_are_present_but_rare(sample: list[DemoListing]) -> None:
    n = len(sample)
    long_bodies = [row for row in sample if row.content and len(row.content) >= 2000]
    assert 0.01 * n <= len(long_bodies) <= 0.06 * n
    assert max(len(row.content or "") for row in sample) >= 3000
    assert 0.01 * n <= sum(row.content is None for row in sample) <= 0.06 * n
    assert 0.03 * n <= sum(row.img_url is None for row in sample) <= 0.15 * n
    assert sum(row.price is None for row in sample) > 0
    assert sum(row.price == 0 for row in sample) > 0
    assert sum(row.odo is None for row in sample) > 0.1 * n
    assert sum(row.updated_at > row.created_at for row in sample) > 0.2 * n


def test_prices_fall_with_age(sample: list[DemoListing]) -> None:
    by_age: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in sample:
        if row.price and row.brand == "혼다" and row.model == "PCX125":
            by_age[row.model]["new" if row.year >= 2022 else "old" if row.year <= 2016 else "mid"].append(
                row.price
            )
    prices = by_age["PCX125"]
    assert (
        statistics.median(prices["new"]) > statistics.median(prices["mid"]) > statistics.median(prices["old"])
    )


def test_mileage_grows_with_age(sample: list[DemoListing]) -> None:
    young = [row.mileage for row in sample if row.year >= NOW.year - 1]
    old = [row.mileage for row in sample if row.year <= NOW.year - 10]
    assert statistics.median(old) > 3 * statistics.median(young)


def test_expensive_models_cost_more(sample: list[DemoListing]) -> None:
    def median_price(brand: str, model: str) -> float:
        return statistics.median(r.price for r in sample if r.brand == brand and r.model == model and r.price)

    assert (
        median_price("BMW", "R1250GS")
        > median_price("야마하", "MT-07")
        > median_price("혼다", "슈퍼커브 110")
    )
