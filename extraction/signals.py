"""Two per-field signals beyond the published three: grounding and agreement with the rules backend.

- grounding: a number the model outputs should be written in the report, as is or before a unit
  conversion (69 in -> 175.26 cm, 0.42 -> 42 %, 5 ft 9 in). Grounded 1.0, ungrounded 0.0 (a
  number that is nowhere in the text is a hallucination or a computed value, both forbidden).
  A null scores 0.7, the same neutral default the published method gives a field it cannot judge:
  the absence of a number proves nothing about whether the report states the field.
- agreement: the published pairwise score between the voted value and the deterministic rules
  backend's value; skipped when the rules backend is not installed (or is the backend itself).

The 'published' combiner ignores both; 'extended' averages all five scores.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from functools import lru_cache

from cmrx.logs import get_logger
from extraction.normalize import _UNIT_ALIASES, parse_number  # the one table of unit factors
from extraction.scoring import DEFAULT, pairwise
from schemas.catalog import CATALOG
from schemas.messages import Evidence, Score

log = get_logger(__name__)

NULL_GROUNDING = DEFAULT
# (?<![\w.])(?:\d+(?:[.,]\d+)*|\.\d+), written to start with a character class (Python's re then
# skips to digits and dots instead of trying every position; see extraction/deid.py)
_NUMBER_RE = re.compile(r"[\d.](?<![\w.][\d.])(?:(?<=\d)\d*(?:[.,]\d+)*|(?<=\.)\d+)")
_ASCII_NUMBER_RE = re.compile(r"[0-9.]" + _NUMBER_RE.pattern[5:])  # for ASCII text (cleaned text is)
_FEET_INCHES_RE = re.compile(r"(\d\d*)\s*(?:'|ft\.?|feet)\s*(\d+(?:\.\d+)?)\s*(?:\"|''|in\.?|inches)?", re.IGNORECASE)


def close(a: float, b: float) -> bool:
    """The evaluation's match rule (truth is rounded to 2 decimals after conversion)."""
    return abs(a - b) <= max(0.01, 0.005 * abs(a))


@lru_cache(maxsize=None)
def _factors(key: str) -> frozenset[float]:
    """Every factor that turns a number written in some unit into the field's canonical unit."""
    unit = _SPECS[key].unit
    factors = {1.0} | {factor for target, factor in _UNIT_ALIASES.values() if target == unit}
    if unit == "%":
        factors.add(100.0)  # a hematocrit or ECV written as a fraction
    return frozenset(factors)


_SPECS = {spec.key: spec for spec in CATALOG.fields}


@lru_cache(maxsize=16)
def _candidates(text: str) -> tuple[tuple[float, int, int], ...]:
    """(number, start, end) for every number written in the text, plus feet+inches heights in cm.
    Cached: the 52 fields of one report scan the same text."""
    found = []
    ascii_text = text.isascii()
    for m in (_ASCII_NUMBER_RE if ascii_text else _NUMBER_RE).finditer(text):
        written = m.group()
        # no comma and at most one '.': parse_number's answer is float() of it (~4x faster)
        number = float(written) if "," not in written and written.count(".") < 2 else parse_number(written)
        if number is not None:
            found.append((number, *m.span()))
    if not ascii_text or _feet_marker_after_digit(text):
        for m in _FEET_INCHES_RE.finditer(text):
            found.append((float(m.group(1)) * 30.48 + float(m.group(2)) * 2.54, m.start(), m.end()))
    return tuple(found)


def _feet_marker_after_digit(text: str) -> bool:
    """Whether an ASCII text has ' or ft or feet (any case) after a digit and spaces, as every
    feet+inches match has: most texts have none (an apostrophe follows a letter)."""
    lowered = text.lower()  # ASCII: same length, same positions
    for marker in ("'", "ft", "feet"):
        position = lowered.find(marker)
        while position >= 0:
            before = position - 1
            while before >= 0 and lowered[before].isspace():  # str.isspace is what \s matches
                before -= 1
            if before >= 0 and lowered[before].isdecimal():
                return True
            position = lowered.find(marker, position + 1)
    return False


@lru_cache(maxsize=16)
def _sorted_numbers(text: str) -> tuple[list[float], list[int]] | None:
    """The text's numbers sorted, with each one's index in text order: a value is looked up by
    bisection instead of against every number. None when one is not finite (the plain scan decides)."""
    numbers = [number for number, _, _ in _candidates(text)]
    if not all(map(math.isfinite, numbers)):
        return None
    order = sorted(range(len(numbers)), key=numbers.__getitem__)  # stable: equal numbers in text order
    return [numbers[i] for i in order], order


@lru_cache(maxsize=None)
def _bisectable(factors: frozenset[float]) -> bool:
    """Every factor positive and finite: a value's matches are found by bisection."""
    return all(0 < f < math.inf for f in factors)


def _first_grounded(value: float, factors: frozenset[float], text: str) -> int | None:
    """Index of the first number in the text (in text order) that some factor makes ``close`` to
    the value: the same answer as trying every number with every factor, found by bisection."""
    candidates = _candidates(text)
    table = None
    if math.isfinite(value) and _bisectable(factors):
        table = _sorted_numbers(text)
    if table is None:
        return next((i for i, (number, _, _) in enumerate(candidates) if any(close(value, number * f) for f in factors)), None)
    numbers, indexes = table
    tolerance = max(0.01, 0.005 * abs(value))  # close(value, x) is abs(value - x) <= tolerance
    best = None
    for f in factors:
        lo, hi = (value - tolerance) / f, (value + tolerance) / f
        slack = 1e-9 * (abs(lo) + abs(hi)) + 1e-300  # a little wider than exact; ``close`` decides
        for i in range(bisect_left(numbers, lo - slack), bisect_right(numbers, hi + slack)):
            if abs(value - numbers[i] * f) <= tolerance and (best is None or indexes[i] < best):
                best = indexes[i]
    return best


def grounding(key: str, value: float | None, text: str) -> tuple[Score, Evidence | None]:
    """Is the value (or its pre-conversion original) written in the de-identified text?"""
    score, reason, evidence = grounding_parts(key, value, text)
    return Score(name="grounding", value=score, reason=reason), (Evidence.model_validate(evidence) if evidence else None)


def grounding_parts(key: str, value: float | None, text: str) -> tuple[float, str, dict | None]:
    """``grounding`` as (value, reason, evidence as a dict or None); the pipeline builds its
    models in one validation."""
    if value is None:
        return NULL_GROUNDING, "null value: nothing to look for", None
    index = _first_grounded(value, _factors(key), text)
    if index is not None:
        _, start, end = _candidates(text)[index]
        written = text[start:end]
        evidence = {"spans": [{"start": start, "end": end, "text": written}], "original_value": written}
        return 1.0, f"written in the report as {written!r}", evidence
    return 0.0, f"{value:g} is not written in the report (nor before a unit conversion)", None


def agreement(value: float | None, rules_value: float | None) -> Score:
    score, reason = agreement_parts(value, rules_value)
    return Score(name="agreement", value=score, reason=reason)


def agreement_parts(value: float | None, rules_value: float | None) -> tuple[float, str]:
    score = pairwise(value, rules_value)
    shown = "null" if rules_value is None else f"{rules_value:g}"
    reason = "agrees with the rules backend" if score >= 1.0 else f"rules backend says {shown}"
    return score, reason


class RulesReference:
    """The rules backend's values for a text, or None when that backend is missing or fails.

    Optional by design: the rules backend is developed separately, and a missing optional signal
    must never stop an extraction.
    """

    def __init__(self, settings=None) -> None:
        self.settings = settings
        self._backend = None
        self._unavailable = False

    def __call__(self, text: str) -> dict[str, float | None] | None:
        if self._unavailable:
            return None
        try:
            if self._backend is None:
                from extraction.backends import get_backend

                self._backend = get_backend("rules", self.settings)
            output = self._backend.extract(text, n_samples=1)
        except ImportError as exc:
            log.info("rules backend not available; agreement skipped", error=str(exc))
            self._unavailable = True
            return None
        except Exception as exc:  # noqa: BLE001 - an optional signal must not fail the report
            log.warning("rules backend failed; agreement skipped", error_type=type(exc).__name__)
            return None
        return dict(output.samples[0].values) if output.samples else None


def field_signals(
    key: str, value: float | None, text: str, reference: Mapping[str, float | None] | None
) -> tuple[list[Score], Evidence | None]:
    """Grounding always; agreement when a rules reference exists. Also returns grounding evidence."""
    ground, evidence = grounding(key, value, text)
    scores = [ground]
    if reference is not None:
        scores.append(agreement(value, reference.get(key)))
    return scores, evidence


def field_signal_parts(
    key: str, value: float | None, text: str, reference: Mapping[str, float | None] | None
) -> tuple[list[tuple[str, float, str]], dict | None]:
    """``field_signals`` as (name, value, reason) triples and the evidence as a dict."""
    score, reason, evidence = grounding_parts(key, value, text)
    parts = [("grounding", score, reason)]
    if reference is not None:
        parts.append(("agreement", *agreement_parts(value, reference.get(key))))
    return parts, evidence
