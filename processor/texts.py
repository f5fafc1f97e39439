"""From a ``products`` row to what is embedded and stored: the text, its hash, the payload, the version.

The embedded text follows ``settings.text_template`` (title + year + price + mileage + body). A
template line whose placeholders are all missing is dropped rather than rendered as "정보 없음" or
an empty label: a line like "연식: 년" only adds tokens every listing shares, which costs money
and pulls unrelated listings closer together.
"""

from __future__ import annotations

import functools
import hashlib
import re
import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["build_text", "payload_for", "template_hash", "text_hash", "version_of"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
_BLANK_RUNS = re.compile(r"\n{3,}")
_FORMATTER = string.Formatter()
#: Hex digits kept of a template's SHA-256: 64 bits tell templates apart and stay readable in logs.
TEMPLATE_HASH_CHARS = 16

#: Columns copied into the payload as they are (besides the id and the source timestamp).
PAYLOAD_COLUMNS = ("title", "url", "img_url", "price", "content", "odo", "brand", "year", "mileage")


def _number(value: Any) -> str:
    """Thousands separators for prices and distances (``1250000`` → ``1,250,000``)."""
    if isinstance(value, (int, Decimal)) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value).strip()


def _field_values(row: Mapping[str, Any]) -> dict[str, str | None]:
    """The template's fields as display strings; ``None`` where the listing has no value."""
    mileage = row.get("mileage")
    if mileage is None:
        mileage = row.get("odo")  # the scraper fills one or the other
    raw: dict[str, Any] = {
        "title": row.get("title"),
        "year": row.get("year"),
        "price": row.get("price"),
        "mileage": mileage,
        "content": row.get("content"),
        "brand": row.get("brand"),
    }
    values: dict[str, str | None] = {}
    for name, value in raw.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            values[name] = None
        elif name in ("price", "mileage"):
            values[name] = _number(value)
        else:
            values[name] = str(value).strip()
    return values


@functools.lru_cache(maxsize=16)
def _template_lines(template: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each line of ``template`` with the placeholders it names (parsed once per template)."""
    return tuple(
        (line, tuple(name for _, name, _, _ in _FORMATTER.parse(line) if name is not None))
        for line in template.split("\n")
    )


def build_text(row: Mapping[str, Any], template: str) -> str:
    """The text embedded for one listing, from ``template`` (see ``Settings.text_template``).

    A line is left out when every placeholder on it is missing (no "Year: " without a year).
    """
    values = _field_values(row)
    present = {name for name, value in values.items() if value is not None}
    filled = {name: value or "" for name, value in values.items()}
    text = "\n".join(
        line.format_map(filled)
        for line, names in _template_lines(template)
        if not names or not present.isdisjoint(names)
    )
    return (_BLANK_RUNS.sub("\n\n", text) if "\n\n\n" in text else text).strip()


def text_hash(text: str) -> str:
    """SHA-256 of the embedded text (hex): equal hashes mean re-embedding would change nothing."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def template_hash(template: str) -> str:
    """A short, stable fingerprint of ``TEXT_TEMPLATE`` (SHA-256, first 16 hex digits).

    A collection records it (with the model and the vector size): vectors embedded from texts
    rendered by another template are not comparable, even with the same model.
    """
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:TEMPLATE_HASH_CHARS]


def version_of(updated_at: datetime) -> int:
    """The write version of a row: ``updated_at`` in microseconds since the epoch (exact, ordered).

    A naive ``updated_at`` (a ``timestamp without time zone`` column) is read as UTC: the versions
    stay ordered as long as the scraper writes that column in one zone, whichever it is.
    """
    if updated_at.tzinfo is None:
        updated_at = updated_at.replace(tzinfo=UTC)
    return (updated_at - _EPOCH) // _ONE_MICROSECOND


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def payload_for(row: Mapping[str, Any]) -> dict[str, Any]:
    """The listing's payload in Qdrant: the columns search results need, plus id and source time."""
    payload = {name: _json_value(row.get(name)) for name in PAYLOAD_COLUMNS}
    payload["product_id"] = int(row["id"])
    updated_at = row.get("updated_at")
    payload["source_updated_at"] = updated_at.isoformat() if isinstance(updated_at, datetime) else None
    return payload
