"""De-identification before any model sees a report.

Two passes:
1. the published rule: drop every line that holds an identifying keyword (MRN, Name, DOB, Date,
   Account, Physician, Nurse, Technologist; configurable), matched as a whole word (plural
   allowed) so "updated", "validated" or "Surname" lines survive;
2. scrub what the keyword rule misses: dates (also glued to a time, ``2023-08-02T17:56``), phone
   numbers, long digit ids, accession-like ids, street addresses, names after titles (Dr, Mr, Pt,
   Patient, Ref, Referring, Re: ...), HL7-style names (``SURNAME^GIVEN``), lines or delimited cells
   that are nothing but a name (words in no clinical or English vocabulary), and sign-off lines
   (signed/dictated/scanned by ..., staff roles, credentials like MD, RN) that carry no measurement.

Markup does not hide anything: every decision is taken on a view of the line where markdown and
key=value marks (``_ * ~ ` ``) are spaces, so ``**Patient:** Jane Doe``, ``_Signed: J. Doe_`` and
``signed_by=J. Doe`` read like their plain forms. All patterns are linear-time (no nested
quantifiers), so a hostile 5 MB report cannot stall us.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cmrx.config import DEFAULT_DEID_KEYWORDS



def _line_local(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """Compile with every ``\\s`` kept within a line: the passes scan the whole text at once."""
    return re.compile(re.sub(r"(?<!\[\^)\\s", lambda _: r"[^\S\n]", pattern), flags)


_MONTHS = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
# numeric dates end at a non-digit, not a word boundary: '2023-08-02T17:56' is a date and a time
_DATE_PATTERNS = [
    r"\b\d{1,2}(?P<sep>[/.\-])\d{1,2}(?P=sep)\d{2,4}(?!\d)",  # 06/17/2023, 13.02.1976, 15-02-2024 (one separator)
    r"\b\d{4}-\d{1,2}-\d{1,2}(?!\d)",                      # 2025-09-19
    rf"\b\d{{1,2}}[\- ]{_MONTHS}[\- ,]+\d{{2,4}}\b",    # 22-Jun-1949, 17 June 2023
    rf"\b{_MONTHS} \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}\b",  # June 17, 2023
]
DATE_RE = re.compile("|".join(_DATE_PATTERNS), re.IGNORECASE)
PHONE_RE = _line_local(r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{3}\)\s?|\b\d{3}[ .\-])\d{3}[ .\-]\d{4}\b")
LONG_ID_RE = re.compile(r"\b\d{6,}\b")
ACCESSION_RE = _line_local(
    r"\b(?:acc(?:ession)?|case|patient|id|mr|record)\b\.?\s*(?:no\b\.?|number|#)?\s*[#:]?\s*"
    r"(?=[A-Z0-9\-]*\d)[A-Z0-9\-]{4,}\b",
    re.IGNORECASE,
)
ALNUM_ID_RE = re.compile(r"\b(?=[A-Z0-9\-]*\d{4})(?=[A-Z0-9\-]*[A-Z])[A-Z][A-Z0-9\-]{5,}\b")
ADDRESS_RE = _line_local(
    r"\b\d{1,6}\s+(?:[A-Z][a-z]+\s+){1,4}(?:Street|St|Drive|Dr|Court|Ct|Circle|Road|Rd|Avenue|Ave|Lane|Ln|Boulevard|Blvd|Way|Place|Pl|Terrace)\b\.?"
    r"(?:,\s*(?:[A-Z][a-z]+\s?){1,3})?(?:,\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"
)
ZIP_RE = _line_local(r"\b[A-Z]{2}\s+\d{5}(?:-\d{4})?\b")
_TITLE = r"(?:Dr|Mr|Mrs|Ms|Miss|Pt|Patient|Ref|Referring|Referred by|Prof|Re(?=:))"
_UPPER, _LOWER, _LETTER = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ", r"[^\W\d_]"
# Mixed case ('LV' is no name), any Latin letters ('Bergström'), name particles ('Van der Berg')
_PARTICLES = ("van", "von", "der", "den", "de", "da", "di", "del", "du", "la", "le", "al", "el", "bin", "ter", "ten")
_NAME_TOKEN = rf"(?:[{_UPPER}](?:[{_LOWER}]|'[{_UPPER}])(?:{_LETTER}|['\-])*|[{_UPPER}]\.|(?:{'|'.join(_PARTICLES)})\b)"
_NAME_STOP = {"id", "data", "parameters", "history", "information", "age", "sex", "no", "number", "is", "was"}
TITLE_NAME_RE = _line_local(
    rf"\b({_TITLE})(\.?:?\s+(?:(?:Dr|Prof)\.?\s+)?(?:med\.\s+)?)({_NAME_TOKEN}(?:,?\s{_NAME_TOKEN}){{0,3}})"
)
LOWER_TITLE_RE = _line_local(r"\b(dr|pt)(\.?\s+)([a-z][a-z'\-]+)\b")
SIGNOFF_RE = _line_local(
    r"\b(?:signed|dictated|transcribed|verified|reported by|reviewed|approved|interpreting|interpreted by|"
    r"read by|analysis\s*:|reporting|consultant|resident|fellow|attending|ordering|referring|clinician|"
    r"scanned by|performed by|acquired by|operator|technician|radiologist|cardiologist|physicist|"
    r"tech|sonographer|radiographer)\b",
)  # lower-case words, matched on the lower-cased view (3x faster than re.IGNORECASE)
# credentials: 'md' and 'MD' alike, but case matters where a credential is also a word ('do', 'rt ventricle')
CREDENTIAL_RE = re.compile(r"\b(?:(?i:md|phd|rdcs|frcr|facc|mbbs|mbchb)|DO|RN|RT)\b")
_MARKUP = str.maketrans("_*~`", "    ")
DASH_SIGNATURE_RE = _line_local(rf"^\s*[-/~]{{1,3}}\s*{_NAME_TOKEN}(?:\s{_NAME_TOKEN}){{1,4}}\s*$", re.MULTILINE)
# HL7 v2 person names (XPN): family^given[^middle...], as exports and interface dumps print them
CARET_NAME_RE = re.compile(rf"(?<!{_LETTER}){_LETTER}(?:{_LETTER}|['\-])*(?:\^{_LETTER}(?:{_LETTER}|['\-. ])*)+")
# a whole line, or a ';' / '|' / tab / wide-space delimited cell, that is only name-shaped words
_CELL_SPLIT = re.compile(r"(\s*[;|\t]\s*|\s{3,}|\s+/\s+)")
_BARE_NAME = re.compile(rf"(?:{_NAME_TOKEN})(?:\s+{_NAME_TOKEN}){{1,4}}")
_TWO_NAME_WORDS = _line_local(rf"[{_UPPER}][{_LOWER}'][^\s;|]*\s+(?:[{_UPPER}]|(?:van|von|de|da|di|del|du|la|le|al|el|bin|ter|ten)\s)")
MEASUREMENT_RE = _line_local(
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
        self._keyword_lower_re = re.compile(rf"\b(?:{words.lower()})s?\b")  # for the lower-cased view

    def __call__(self, text: str) -> DeidResult:
        """Whole-text passes (one regex scan per pattern, not per line); every pattern stays
        within a line, so decisions are still taken line by line."""
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        result = DeidResult(text="")
        view = text.translate(_MARKUP)
        keyword_lines = _lines_of(self._keyword_lower_re, view.lower())
        text, view = _scrub(text, view, result.scrubbed)
        signoff = _signoff_lines(view)
        candidates = _lines_of(_TWO_NAME_WORDS, view)
        kept: list[str] = []
        for index, (line, line_view) in enumerate(zip(text.split("\n"), view.split("\n"))):
            if index in keyword_lines or index in signoff:
                result.dropped_lines += 1
                continue
            if index in candidates:
                line = _bare_names(line, line_view, result.scrubbed)
            kept.append(line)
        result.text = "\n".join(kept)
        return result


def _scrub(text: str, view: str, counts: dict[str, int]) -> tuple[str, str]:
    """The scrubbed text and its markup-free view (same length, so matches found on the view are
    replaced at the same places in the text)."""
    for name, pattern, replacement in _SCRUBBERS:
        if pattern is CARET_NAME_RE and "^" not in view:
            continue
        pieces_text: list[str] = []
        pieces_view: list[str] = []
        last = 0
        for match in pattern.finditer(view):
            new = replacement if isinstance(replacement, str) else replacement(match)
            if new == match.group(0):
                continue
            pieces_text += [text[last:match.start()], new]
            pieces_view += [view[last:match.start()], new]
            last = match.end()
            counts[name] = counts.get(name, 0) + 1
        if last:
            text = "".join(pieces_text) + text[last:]
            view = "".join(pieces_view) + view[last:]
    return text, view


def _lines_of(pattern: re.Pattern[str], text: str) -> set[int]:
    """Indexes of the lines where ``pattern`` matches."""
    lines: set[int] = set()
    newline_count, position = 0, 0
    for match in pattern.finditer(text):
        newline_count += text.count("\n", position, match.start())
        position = match.start()
        lines.add(newline_count)
    return lines


def _signoff_lines(view: str) -> set[int]:
    """Sign-off lines: a dash signature, or a sign-off word or credential on a line that holds no
    measurement."""
    measured = _lines_of(MEASUREMENT_RE, view)
    words = (_lines_of(SIGNOFF_RE, view.lower()) | _lines_of(CREDENTIAL_RE, view)) - measured
    return words | _lines_of(DASH_SIGNATURE_RE, view)


def _bare_names(line: str, view: str, counts: dict[str, int]) -> str:
    """Replace cells (or the whole line) that are nothing but 2-5 name-shaped words, none of them a
    word of the clinical vocabulary or ordinary English ('Hana Castellanos', 'SIG;Tariq Doe;[ID]';
    'Left Ventricle' stays). A heading made only of unknown capitalised words would go too: that
    loses a heading, never a measurement (cells with digits are never touched). Called only for the
    lines ``_TWO_NAME_WORDS`` finds (the cheap test: most lines fail it)."""
    position = 0
    out: list[str] = []
    for index, part in enumerate(_CELL_SPLIT.split(view)):
        original = line[position:position + len(part)]
        position += len(part)
        cell = part.strip(" -:,.")
        if index % 2 == 0 and cell and _BARE_NAME.fullmatch(cell) and not _known_word_in(cell):
            start = part.index(cell)
            out.append(part[:start] + "[NAME]" + part[start + len(cell):])
            counts["name"] = counts.get("name", 0) + 1
        else:
            out.append(original)
    return "".join(out)


@functools.cache
def _vocabulary() -> frozenset[str]:
    """Words that are not names: the field catalog's (labels, synonyms, category phrases) and the
    ordinary English and report words the rules backend knows."""
    from extraction.backends.rules.words import WORDS
    from schemas.catalog import CATALOG_PATH

    catalog_words = re.findall(r"[a-z]+", CATALOG_PATH.read_text(encoding="utf-8").lower())
    return frozenset(WORDS) | frozenset(catalog_words)


def _known_word_in(cell: str) -> bool:
    vocabulary = _vocabulary()
    return any(w.lower() in vocabulary for w in re.findall(r"[^\W\d_]+", cell) if len(w) > 1 and w.lower() not in _PARTICLES)


def _name_replacement(match: re.Match[str]) -> str:
    title, gap, name = match.groups()
    if name.split()[0].rstrip(",.").lower() in _NAME_STOP:
        return match.group(0)
    return f"{title}{gap}[NAME]"


# (kind, pattern, replacement), applied in this order
_SCRUBBERS = [
    ("address", ADDRESS_RE, "[ADDRESS]"),
    ("date", DATE_RE, "[DATE]"),
    ("phone", PHONE_RE, "[PHONE]"),
    ("accession", ACCESSION_RE, "[ID]"),
    ("id", LONG_ID_RE, "[ID]"),
    ("id", ALNUM_ID_RE, "[ID]"),
    ("zip", ZIP_RE, "[ZIP]"),
    ("name", CARET_NAME_RE, "[NAME]"),
    ("name", TITLE_NAME_RE, _name_replacement),
    ("name", LOWER_TITLE_RE, lambda m: f"{m.group(1)}{m.group(2)}[NAME]"),
]


def deidentify(text: str, keywords: Iterable[str] = DEFAULT_DEID_KEYWORDS) -> str:
    return Deidentifier(keywords)(text).text
