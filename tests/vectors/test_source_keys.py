"""Source keys: what they are bound to, and that they cover every column the text is rendered from."""

from __future__ import annotations

from typing import Any

from finally_indexer.core.settings import DEFAULT_TEXT_TEMPLATE
from finally_indexer.db.products import LISTING_COLUMNS, TEXT_COLUMNS
from finally_indexer.processor.source_keys import source_keyer
from finally_indexer.processor.texts import build_text

ROW: dict[str, Any] = {
    "id": 1, "title": "혼다 PCX", "url": "u", "img_url": "i", "price": 1_000_000, "content": "본문", "odo": 500,
    "mileage": 1_000, "brand": "Honda", "year": 2020, "updated_at": None, "is_conversion": True,
}  # fmt: skip
EVERY_FIELD = "{title} {year} {price} {mileage} {brand}\n{content}"


def test_the_fingerprinted_columns_are_every_column_the_text_can_change_with() -> None:
    for column in LISTING_COLUMNS:
        # odo is read when mileage is missing: it is judged on a row without mileage
        row = {**ROW, "mileage": None} if column == "odo" else ROW
        differs = build_text({**row, column: None}, EVERY_FIELD) != build_text(row, EVERY_FIELD)
        assert differs == (column in TEXT_COLUMNS), column


def test_a_key_is_bound_to_the_fingerprint_the_text_hash_and_the_template() -> None:
    key = source_keyer(DEFAULT_TEXT_TEMPLATE)
    other_template = source_keyer(DEFAULT_TEXT_TEMPLATE + "\n{brand}")

    assert key("f" * 32, "h" * 64) == source_keyer(DEFAULT_TEXT_TEMPLATE)("f" * 32, "h" * 64)  # stable
    assert len({key("f" * 32, "h" * 64), key("e" * 32, "h" * 64), key("f" * 32, "g" * 64),
                other_template("f" * 32, "h" * 64)}) == 4  # fmt: skip
