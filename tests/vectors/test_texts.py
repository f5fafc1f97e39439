"""The embedded text, its hash, the payload and the write version of a listing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from finally_indexer.core.settings import DEFAULT_TEXT_TEMPLATE
from finally_indexer.processor.texts import build_text, payload_for, template_hash, text_hash, version_of

ROW = {
    "id": 17,
    "title": "혼다 PCX125 2021년식",
    "url": "https://example.test/17",
    "img_url": "https://example.test/17.jpg",
    "price": 2_350_000,
    "content": "  출퇴근용으로 타던 차량입니다.\n상태 좋아요.  ",
    "odo": 11_800,
    "mileage": 12_000,
    "brand": "혼다",
    "year": 2021,
    "updated_at": datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
}


def test_full_row_follows_the_template() -> None:
    assert build_text(ROW, DEFAULT_TEXT_TEMPLATE) == (
        "혼다 PCX125 2021년식\n연식: 2021년\n가격: 2,350,000원\n주행거리: 12,000km\n\n출퇴근용으로 타던 차량입니다.\n상태 좋아요."
    )


@pytest.mark.parametrize(
    ("changes", "expected_lines"),
    [
        ({"year": None}, ["혼다 PCX125 2021년식", "가격: 2,350,000원", "주행거리: 12,000km"]),
        (
            {"mileage": None},
            ["혼다 PCX125 2021년식", "연식: 2021년", "가격: 2,350,000원", "주행거리: 11,800km"],
        ),
        ({"mileage": None, "odo": None, "price": None}, ["혼다 PCX125 2021년식", "연식: 2021년"]),
        (
            {"price": Decimal("990000")},
            ["혼다 PCX125 2021년식", "연식: 2021년", "가격: 990,000원", "주행거리: 12,000km"],
        ),
        ({"title": "  "}, ["연식: 2021년", "가격: 2,350,000원", "주행거리: 12,000km"]),
    ],
)
def test_missing_values_drop_their_line(changes: dict[str, object], expected_lines: list[str]) -> None:
    text = build_text({**ROW, **changes}, DEFAULT_TEXT_TEMPLATE)
    assert text.split("\n\n")[0].split("\n") == expected_lines


def test_no_content_leaves_no_trailing_blank_lines() -> None:
    text = build_text({**ROW, "content": None}, DEFAULT_TEXT_TEMPLATE)
    assert text.endswith("주행거리: 12,000km")


def test_custom_template_with_brand() -> None:
    assert build_text(ROW, "[{brand}] {title} ({year})") == "[혼다] 혼다 PCX125 2021년식 (2021)"


def test_text_hash_is_sha256_hex_and_content_sensitive() -> None:
    assert text_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert text_hash(build_text(ROW, DEFAULT_TEXT_TEMPLATE)) != text_hash(
        build_text({**ROW, "price": 1}, DEFAULT_TEXT_TEMPLATE)
    )


def test_template_hash_is_short_stable_and_template_sensitive() -> None:
    assert template_hash(DEFAULT_TEXT_TEMPLATE) == "aeca6ebc5e1b94c8"  # quoted in docs/operations.md
    assert template_hash("{title}\n{content}") != template_hash("{title}\n\n{content}")


def test_payload_has_every_listing_column_and_the_source_time() -> None:
    payload = payload_for({**ROW, "price": Decimal("2350000")})
    assert payload == {
        "title": ROW["title"],
        "url": ROW["url"],
        "img_url": ROW["img_url"],
        "price": 2_350_000,
        "content": ROW["content"],
        "odo": 11_800,
        "brand": "혼다",
        "year": 2021,
        "mileage": 12_000,
        "product_id": 17,
        "source_updated_at": "2024-05-01T12:30:15.123456+00:00",
    }
    assert isinstance(payload["price"], int)


def test_version_is_microseconds_since_epoch_and_ordered() -> None:
    t = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    assert version_of(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert version_of(t + timedelta(microseconds=1)) == version_of(t) + 1
    seoul = t.astimezone(timezone(timedelta(hours=9)))
    assert version_of(seoul) == version_of(t)
    assert version_of(t) < 2**53  # exact as a float in Qdrant's range filters


def test_naive_timestamps_are_read_as_utc() -> None:
    """A ``timestamp without time zone`` column yields naive datetimes: they are UTC, not refused."""
    naive = datetime(2024, 5, 1, 12, 30, 15, 123456)
    assert version_of(naive) == version_of(naive.replace(tzinfo=UTC))
    assert version_of(naive + timedelta(microseconds=1)) == version_of(naive) + 1
