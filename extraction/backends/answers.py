"""Shared by the LLM backends: typed reasons an answer is rejected, and one-field answers.

An answer that is cut off, runs away into whitespace, or breaks the schema is never turned into
nulls: it is rejected with one of these errors and counted in ``BackendOutput.invalid``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from extraction.backends.base import BackendOutput, Sample
from extraction.prompt import parse_field_output
from schemas.model_output import InvalidModelOutput, parse_model_output

T = TypeVar("T")

_WHITESPACE_RUN = re.compile(r"\s{16,}")


class RejectedAnswer(InvalidModelOutput):
    """Base of the backend-side reasons; InvalidModelOutput covers bad JSON and schema breaks."""


class TruncatedAnswer(RejectedAnswer):
    """finish_reason 'length' (or anything but a normal stop): the JSON may be incomplete."""


class WhitespaceRunaway(RejectedAnswer):
    """A long whitespace run: the known failure of JSON-constrained decoding that fills the budget."""


def check_whitespace(text: str) -> None:
    match = _WHITESPACE_RUN.search(text)
    if match:
        raise WhitespaceRunaway(f"whitespace run of {len(match.group(0))} characters at char {match.start()}")


def reason(exc: Exception) -> str:
    """How a rejection is written into ``BackendOutput.invalid``."""
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class FieldAnswer:
    """One sampled answer to a one-field (teacher) prompt."""

    value: float | str | None
    finished: bool
    reason: str = ""


def _text(item):
    return item


def parse_answers(items: Iterable[T], text_of: Callable[[T], str] = _text) -> BackendOutput:
    """Validate each full answer with ``parse_model_output``; a rejected one goes to ``invalid``."""
    samples: list[Sample] = []
    invalid: list[str] = []
    for item in items:
        try:
            values, category = parse_model_output(text_of(item))
        except InvalidModelOutput as exc:
            invalid.append(reason(exc))
            continue
        samples.append(Sample(values=values, category=category))
    return BackendOutput(samples=samples, invalid=invalid)


def parse_field_answers(items: Iterable[T], key: str, text_of: Callable[[T], str] = _text) -> list[FieldAnswer]:
    """Validate each one-field answer with ``parse_field_output``; a rejected one is unfinished."""
    answers = []
    for item in items:
        try:
            answers.append(FieldAnswer(parse_field_output(text_of(item), key), finished=True))
        except InvalidModelOutput as exc:
            answers.append(FieldAnswer(None, finished=False, reason=reason(exc)))
    return answers
