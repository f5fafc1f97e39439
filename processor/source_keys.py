"""Source keys: what lets an audit trust a point's text hash without rendering the row again.

A point's text hash names the text its vector was embedded from. Whether that is still the text
of the row as it is now could only be told by rendering and hashing every row — most of an
audit's work (a million rows take a core for ~17 s). So every point the indexer writes also
carries a *source key*: a keyed hash of

- the row's **source fingerprint**, computed by PostgreSQL in the same read the text was
  rendered from (SHA-256 of the text columns, :data:`~finally_indexer.db.products.SOURCE_FINGERPRINT`),
- the point's **text hash**,
- keyed by the **rendering**: the template, what it renders a set of probe rows as, and
  :data:`RENDERING_REVISION`.

The audit reads the fingerprint of the row as it is now (PostgreSQL computes it) and recomputes the
key with the point's text hash: equal keys mean the row's text columns, the template and the
rendering are those the text hash was computed from, so the text hash is the row's text's. Any
difference — a row edited without a job (even keeping its ``updated_at``), another template or
rendering, a text hash edited by hand, a point written without a key — proves nothing either way,
and the row is rendered and hashed as before. A key can only spare work, never change a verdict.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from finally_indexer.processor.texts import build_text

__all__ = ["RENDERING_REVISION", "source_keyer"]

#: Bumped whenever ``build_text`` may render a row differently for the same template (the probe
#: rows below catch most such changes on their own; this catches the rest).
RENDERING_REVISION: Final = 1

#: Rows that exercise every branch of the rendering: numbers with separators, fractions, missing,
#: blank and padded fields, the ``odo`` fallback for ``mileage``.
_PROBES: Final[tuple[dict[str, Any], ...]] = (
    {"title": " 혼다 PCX ", "year": 2021, "price": 1250000, "content": "본문\n\n\n\n끝", "brand": "Honda",
     "mileage": 12000, "odo": None},
    {"title": "Vespa", "year": None, "price": Decimal("990000.50"), "content": "  ", "brand": None,
     "mileage": None, "odo": 1234.5},
    {"title": "", "year": "2019", "price": None, "content": None, "brand": " ", "mileage": 7.0, "odo": 3},
)  # fmt: skip


@functools.lru_cache(maxsize=16)
def _rendering_key(template: str) -> bytes:
    """32 bytes that change when the template or the way it renders rows does."""
    digest = hashlib.sha256(f"{RENDERING_REVISION}\0{template}".encode())
    for probe in _PROBES:
        digest.update(b"\0" + build_text(probe, template).encode("utf-8"))
    return digest.digest()


@functools.lru_cache(maxsize=16)
def source_keyer(template: str) -> Callable[[str, str], str]:
    """``key(fingerprint, text_hash)``: the source key of a point rendered with ``template``."""
    rendering = _rendering_key(template)
    blake2b = hashlib.blake2b

    def key(fingerprint: str, text_hash: str) -> str:
        return blake2b(f"{fingerprint}:{text_hash}".encode(), key=rendering, digest_size=16).hexdigest()

    return key
