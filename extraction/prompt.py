"""The one prompt and answer format shared by inference (every backend) and training.

Prompt = instruction + field list (key, short description, unit; from the catalog) + the
de-identified report + a response marker. Instruction and field list never change, so they form
a fixed ``PREFIX`` that a server (vLLM prefix caching) or the local backend (a cached KV state)
computes once. The answer is compact JSON, keys in catalog order, then CATEGORY:
``{"HEIGHT":175.26,"WEIGHT":null,...,"CATEGORY":"CAD"}``. The answer is described as a list of
``Forced`` pieces (text the format forces) and ``Slot`` pieces (what the model chooses), so the
training target, the local forced-token decoder and the validator cannot drift apart.

Teacher mode asks one field at a time: ``build_field_prompt`` puts the report before the
question so that all 53 questions about one report share a cached report prefix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from schemas.catalog import CATALOG, CATEGORIES, FIELD_KEYS
from schemas.model_output import InvalidModelOutput

CATEGORY_KEY = "CATEGORY"

INSTRUCTION = (
    "You read one cardiac MRI (CMR) report and fill a JSON object with the measurements it states.\n"
    "Rules:\n"
    "- Give each field the number the report states for this study, converted to the unit shown below "
    "(in x 2.54 = cm, lb x 0.4536 = kg, mm / 10 = cm, s x 1000 = ms, a fraction 0.42 = 42 %).\n"
    "- Use null when the report does not state the field.\n"
    "- Never compute a value from other values (no stroke volume from EDV - ESV, no index from BSA) "
    "and never guess.\n"
    "- Ignore reference or normal ranges and values of prior studies.\n"
    f"- CATEGORY is the main diagnosis, one of: {', '.join(CATEGORIES)}.\n"
    "Fields (key: meaning, unit):\n"
)
FIELD_LIST = "".join(f"{f.key}: {f.description}, {f.unit}\n" for f in CATALOG.fields)
REPORT_HEADER = "\nReport:\n"
RESPONSE_MARKER = "\n\nJSON:\n"

PREFIX = INSTRUCTION + FIELD_LIST + REPORT_HEADER
"""Fixed for every report: cache its KV state once (it changes only with the model or adapter)."""


def build_prompt(text: str) -> str:
    """The full prompt for one de-identified, cleaned report.

    The report is stripped so the text after PREFIX starts with a non-space character: then a
    tokenizer splits PREFIX and the rest at the same place whether it sees them together or apart.
    """
    return PREFIX + text.strip() + RESPONSE_MARKER


# ---- answer layout ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Forced:
    """Text the answer format forces (keys, quotes, punctuation)."""

    text: str


@dataclass(frozen=True)
class Slot:
    """A value the model chooses: a number-or-null for a field, or one of ``choices``."""

    key: str
    kind: Literal["number", "choice"]
    choices: tuple[str, ...] = ()


Piece = Forced | Slot


def answer_layout(keys: Sequence[str] = FIELD_KEYS, category: bool = True) -> list[Piece]:
    """Pieces of the compact answer, in order: ``{"K1":<v>,"K2":<v>,...,"CATEGORY":"<c>"}``."""
    pieces: list[Piece] = []
    for i, key in enumerate(keys):
        pieces += [Forced(("{" if i == 0 else ",") + json.dumps(key) + ":"), Slot(key, "number")]
    if category:
        opener = "{" if not keys else ","
        pieces += [Forced(f'{opener}"{CATEGORY_KEY}":"'), Slot(CATEGORY_KEY, "choice", tuple(CATEGORIES)), Forced('"}')]
    else:
        pieces.append(Forced("}"))
    return pieces


def format_number(value: float | None) -> str:
    """JSON text of a value as the target writes it: 2 decimals at most, no trailing zeros."""
    if value is None:
        return "null"
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    text = f"{round(value, 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def render(layout: Sequence[Piece], answers: Mapping[str, Any]) -> str:
    parts = []
    for piece in layout:
        if isinstance(piece, Forced):
            parts.append(piece.text)
        elif piece.kind == "number":
            parts.append(format_number(answers.get(piece.key)))
        else:
            parts.append(str(answers[piece.key]))
    return "".join(parts)


def build_target(values: Mapping[str, float | None], category: str) -> str:
    """Training target: the 52-field JSON then CATEGORY, exactly as the local decoder writes it."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown CATEGORY {category!r}")
    return render(answer_layout(), {**values, CATEGORY_KEY: category})


# ---- teacher mode: one field per prompt -------------------------------------------------------

TEACHER_INSTRUCTION = (
    "You read one cardiac MRI (CMR) report and answer one question about it with a small JSON object.\n"
    "Give the number the report states for this study, converted to the unit asked for; null when the "
    "report does not state it. Never compute it from other values and never guess. Ignore reference "
    "ranges and prior studies.\n"
)


TEACHER_PREFIX = TEACHER_INSTRUCTION + REPORT_HEADER
"""Fixed for every teacher prompt; the report follows it and is shared by all field questions."""


def field_prompt_parts(text: str, key: str) -> tuple[str, str]:
    """(shared, question): ``shared`` is the teacher prefix + report, the same for every field.

    ``shared`` ends with the report's last non-space character and ``question`` starts with a
    newline, so the split never falls inside a token."""
    shared = TEACHER_PREFIX + text.strip()
    if key == CATEGORY_KEY:
        question = f"\n\nQuestion: what is the main diagnosis? Answer CATEGORY, one of: {', '.join(CATEGORIES)}."
    else:
        spec = CATALOG.field(key)
        question = f"\n\nQuestion: what is {key}, the {spec.description}, in {spec.unit}?"
    return shared, question + RESPONSE_MARKER


def build_field_prompt(text: str, key: str) -> str:
    shared, question = field_prompt_parts(text, key)
    return shared + question


def field_layout(key: str) -> list[Piece]:
    if key == CATEGORY_KEY:
        return answer_layout(keys=(), category=True)
    return answer_layout(keys=(key,), category=False)


def field_output_schema(key: str) -> dict[str, Any]:
    """JSON schema of a one-field answer (for vLLM structured outputs)."""
    if key == CATEGORY_KEY:
        prop: dict[str, Any] = {"type": "string", "enum": list(CATEGORIES)}
    else:
        CATALOG.field(key)  # KeyError for an unknown field
        prop = {"type": ["number", "null"]}
    return {"type": "object", "properties": {key: prop}, "required": [key], "additionalProperties": False}


def parse_field_output(text: str, key: str) -> float | str | None:
    """Validate a one-field answer; fail closed with InvalidModelOutput like ``parse_model_output``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidModelOutput(f"not JSON: {exc.msg} at char {exc.pos}") from exc
    if not isinstance(data, dict) or set(data) != {key}:
        raise InvalidModelOutput(f"expected an object with the single key {key}")
    value = data[key]
    if key == CATEGORY_KEY:
        if value not in CATEGORIES:
            raise InvalidModelOutput(f"CATEGORY {value!r} is not one of {list(CATEGORIES)}")
        return value
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise InvalidModelOutput(f"{key} is not a number or null")
