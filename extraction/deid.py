"""De-identification before any model sees a report.

Two passes:
1. the published rule: drop every line that holds an identifying keyword (MRN, Name, DOB, Date,
   Account, Physician, Nurse, Technologist; configurable), matched as a whole word (plural
   allowed) so "updated", "validated" or "Surname" lines survive;
2. scrub what the keyword rule misses: dates, phone numbers, long digit ids, accession-like ids,
   street addresses, names after titles (Dr, Mr, Pt, Patient, Ref, Referring ...), and sign-off
   lines (signed/dictated/verified ..., credentials like MD, RN) that carry no measurement.

All patterns are linear-time (no nested quantifiers), so a hostile 5 MB report cannot stall us.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cmrx.config import DEFAULT_DEID_KEYWORDS

_MONTHS = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_DATE_PATTERNS = [
    r"\b\d{1,2}(?P<sep>[/.\-])\d{1,2}(?P=sep)\d{2,4}\b",  # 06/17/2023, 13.02.1976, 15-02-2024 (one separator)
    r"\b\d{4}-\d{1,2}-\d{1,2}\b",                      # 2025-09-19
    rf"\b\d{{1,2}}[\- ]{_MONTHS}[\- ,]+\d{{2,4}}\b",    # 22-Jun-1949, 17 June 2023
    rf"\b{_MONTHS} \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}\b",  # June 17, 2023
]
DATE_RE = re.compile("|".join(_DATE_PATTERNS), re.IGNORECASE)
PHONE_RE = re.compile(r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{3}\)\s?|\b\d{3}[ .\-])\d{3}[ .\-]\d{4}\b")
LONG_ID_RE = re.compile(r"\b\d{6,}\b")
ACCESSION_RE = re.compile(
    r"\b(?:acc(?:ession)?|case|patient|id|mr|record)\b\.?\s*(?:no\b\.?|number|#)?\s*[#:]?\s*"
    r"(?=[A-Z0-9\-]*\d)[A-Z0-9\-]{4,}\b",
    re.IGNORECASE,
)
ALNUM_ID_RE = re.compile(r"\b(?=[A-Z0-9\-]*\d{4})(?=[A-Z0-9\-]*[A-Z])[A-Z][A-Z0-9\-]{5,}\b")
ADDRESS_RE = re.compile(
    r"\b\d{1,6}\s+(?:[A-Z][a-z]+\s+){1,4}(?:Street|St|Drive|Dr|Court|Ct|Circle|Road|Rd|Avenue|Ave|Lane|Ln|Boulevard|Blvd|Way|Place|Pl|Terrace)\b\.?"
    r"(?:,\s*(?:[A-Z][a-z]+\s?){1,3})?(?:,\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"
)
ZIP_RE = re.compile(r"\b[A-Z]{2}\s+\d{5}(?:-\d{4})?\b")
_TITLE = r"(?:Dr|Mr|Mrs|Ms|Miss|Pt|Patient|Ref|Referring|Referred by|Prof)"
_NAME_TOKEN = r"(?:[A-Z](?:[a-z]|'[A-Z])[A-Za-z'\-]*|[A-Z]\.)"  # Mixed case: 'LV' is no name
_NAME_STOP = {"id", "data", "parameters", "history", "information", "age", "sex", "no", "number", "is", "was"}
TITLE_NAME_RE = re.compile(
    rf"\b({_TITLE})(\.?:?\s+(?:(?:Dr|Prof)\.?\s+)?(?:med\.\s+)?)({_NAME_TOKEN}(?:,?\s{_NAME_TOKEN}){{0,3}})"
)
LOWER_TITLE_RE = re.compile(r"\b(dr|pt)(\.?\s+)([a-z][a-z'\-]+)\b")
SIGNOFF_RE = re.compile(
    r"\b(?:signed|dictated|transcribed|verified|reported by|reviewed|approved|interpreting|interpreted by|"
    r"read by|analysis\s*:|reporting|consultant|resident|fellow|attending|ordering|referring|clinician|"
    r"tech|sonographer|radiographer|MD|DO|RN|PhD|FRCR|FACC|MBBS)\b",
    re.IGNORECASE,
)
DASH_SIGNATURE_RE = re.compile(rf"^\s*[-/~]{{1,3}}\s*{_NAME_TOKEN}(?:\s{_NAME_TOKEN}){{1,3}}\s*$")
MEASUREMENT_RE = re.compile(
    r"\d\s*(?:ml|cc|%|g|kg|cm|mm|m2|m\^2|bpm|ms|msec|mmhg|l/min|lbs?|in)\b", re.IGNORECASE
)


@dataclass
class DeidResult:
    text: str
    dropped_lines: int = 0
    scrubbed: dict[str, int] = field(default_factory=dict)


class Deidentifier:
    def __init__(self, keywords: Iterable[str] = DEFAULT_DEID_KEYWORDS) -> None:
        words = "|".join(re.escape(k) for k in keywords)
        self.keyword_re = re.compile(rf"\b(?:{words})s?\b", re.IGNORECASE)

    def __call__(self, text: str) -> DeidResult:
        result = DeidResult(text="")
        kept: list[str] = []
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            if self.keyword_re.search(line):
                result.dropped_lines += 1
                continue
            line = self._scrub(line, result.scrubbed)
            if DASH_SIGNATURE_RE.match(line) or (SIGNOFF_RE.search(line) and not MEASUREMENT_RE.search(line)):
                result.dropped_lines += 1
                continue
            kept.append(line)
        result.text = "\n".join(kept)
        return result

    @staticmethod
    def _scrub(line: str, counts: dict[str, int]) -> str:
        def sub(name: str, pattern: re.Pattern[str], replacement, text: str) -> str:
            new, n = pattern.subn(replacement, text)
            if n:
                counts[name] = counts.get(name, 0) + n
            return new

        line = sub("address", ADDRESS_RE, "[ADDRESS]", line)
        line = sub("date", DATE_RE, "[DATE]", line)
        line = sub("phone", PHONE_RE, "[PHONE]", line)
        line = sub("accession", ACCESSION_RE, "[ID]", line)
        line = sub("id", LONG_ID_RE, "[ID]", line)
        line = sub("id", ALNUM_ID_RE, "[ID]", line)
        line = sub("zip", ZIP_RE, "[ZIP]", line)
        line = sub("name", TITLE_NAME_RE, _name_replacement, line)
        line = sub("name", LOWER_TITLE_RE, lambda m: f"{m.group(1)}{m.group(2)}[NAME]", line)
        return line


def _name_replacement(match: re.Match[str]) -> str:
    title, gap, name = match.groups()
    if name.split()[0].rstrip(",.").lower() in _NAME_STOP:
        return match.group(0)
    return f"{title}{gap}[NAME]"


def deidentify(text: str, keywords: Iterable[str] = DEFAULT_DEID_KEYWORDS) -> str:
    return Deidentifier(keywords)(text).text
