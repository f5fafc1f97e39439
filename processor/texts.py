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

__all__ = ["build_text", "datetime_of", "payload_for", "template_hash", "text_hash", "version_of"]

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


#: The template's placeholders, in the order ``_fields`` reads them.
_FIELDS = ("title", "year", "price", "content", "brand")
#: Placeholders shown with thousands separators.
_NUMBERS = frozenset(("price", "mileage"))


def _fields(row: Mapping[str, Any]) -> tuple[dict[str, str], set[str]]:
    """The template's fields as display strings (``""`` where missing) and the names present.

    Called once per listing by every sync and for every row an audit reads (a million rows per
    audit): one pass, no intermediate mapping.
    """
    get = row.get
    mileage = get("mileage")
    if mileage is None:
        mileage = get("odo")  # the scraper fills one or the other
    filled: dict[str, str] = {}
    present: set[str] = set()
    for name, value in zip((*_FIELDS, "mileage"), (*map(get, _FIELDS), mileage), strict=True):
        if value is None:
            filled[name] = ""
            continue
        if isinstance(value, str):
            text = value.strip()
            if not text:  # a blank value is a missing one
                filled[name] = ""
                continue
        else:
            text = _number(value) if name in _NUMBERS else str(value).strip()
        filled[name] = text
        present.add(name)
    return filled, present


@functools.lru_cache(maxsize=16)
def _compiled(template: str) -> tuple[tuple[tuple[str, frozenset[str]], ...], frozenset[str]]:
    """Each line of ``template`` with the placeholders it names, and all of them (parsed once)."""
    lines = tuple(
        (line, frozenset(name for _, name, _, _ in _FORMATTER.parse(line) if name is not None))
        for line in template.split("\n")
    )
    return lines, frozenset().union(*(names for _, names in lines))


def build_text(row: Mapping[str, Any], template: str) -> str:
    """The text embedded for one listing, from ``template`` (see ``Settings.text_template``).

    A line is left out when every placeholder on it is missing (no "Year: " without a year).
    """
    filled, present = _fields(row)
    lines, names = _compiled(template)
    if names <= present:  # no line is left out: one format call (most listings have every field)
        text = template.format_map(filled)
    else:
        text = "\n".join(
            line.format_map(filled) for line, named in lines if not named or not present.isdisjoint(named)
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


def datetime_of(version: int) -> datetime:
    """The instant a version stands for (UTC): ``version_of(datetime_of(v)) == v``."""
    return _EPOCH + timedelta(microseconds=version)


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
