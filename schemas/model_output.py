"""The JSON Schema the model must fill: flat, number-or-null per field, CATEGORY an enum.

No nesting and no oneOf, so every constrained-decoding engine (xgrammar, outlines, vLLM's
structured outputs) compiles it, and key order is the catalog's output order.
"""

from __future__ import annotations

import json
import math
from typing import Any

from schemas.catalog import CATEGORIES, FIELD_KEYS


def model_output_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {key: {"type": ["number", "null"]} for key in FIELD_KEYS}
    properties["CATEGORY"] = {"type": "string", "enum": list(CATEGORIES)}
    return {
        "title": "CMRExtraction",
        "type": "object",
        "properties": properties,
        "required": [*FIELD_KEYS, "CATEGORY"],
        "additionalProperties": False,
    }


class InvalidModelOutput(ValueError):
    """The model's answer is not a JSON object that fits the schema (counted as Invalid)."""


def parse_model_output(text: str) -> tuple[dict[str, float | None], str]:
    """Parse and validate one answer; fail closed with InvalidModelOutput."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidModelOutput(f"not JSON: {exc.msg} at char {exc.pos}") from exc
    if not isinstance(data, dict):
        raise InvalidModelOutput("answer is not a JSON object")
    extra = set(data) - set(FIELD_KEYS) - {"CATEGORY"}
    missing = [k for k in (*FIELD_KEYS, "CATEGORY") if k not in data]
    if extra or missing:
        raise InvalidModelOutput(f"keys: missing {missing[:5]}, unexpected {sorted(extra)[:5]}")
    values: dict[str, float | None] = {}
    for key in FIELD_KEYS:
        value = data[key]
        if value is None:
            values[key] = None
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            values[key] = float(value)
        else:
            raise InvalidModelOutput(f"{key} is not a number or null")
    category = data["CATEGORY"]
    if category not in CATEGORIES:
        raise InvalidModelOutput(f"CATEGORY {category!r} is not one of {list(CATEGORIES)}")
    return values, category
