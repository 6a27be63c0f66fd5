"""Shared by the LLM backends: typed reasons an answer is rejected, and one-field answers.

An answer that is cut off, runs away into whitespace, or breaks the schema is never turned into
nulls: it is rejected with one of these errors and counted in ``BackendOutput.invalid``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.model_output import InvalidModelOutput

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
