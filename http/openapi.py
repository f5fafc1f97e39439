"""OpenAPI helpers: request-body examples taken from the models' own ``json_schema_extra``."""

from __future__ import annotations

from typing import Any

from litestar.openapi.spec import Example
from litestar.params import BodyKwarg
from pydantic import BaseModel


def json_body(model: type[BaseModel]) -> BodyKwarg:
    """A JSON body marker carrying the model's examples (Litestar ignores model-level examples)."""
    extra: Any = model.model_config.get("json_schema_extra") or {}
    examples = [Example(summary=_summary(e), value=e) for e in extra.get("examples", [])]
    return BodyKwarg(examples=examples or None, description=(model.__doc__ or "").strip().split("\n\n")[0])


def _summary(example: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in example.items())[:80]
