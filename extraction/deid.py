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

Speed (the consumer runs this on every report): Python's ``re`` scans fast only to the characters
a pattern can start with, and only when the pattern begins with a character class. A pattern that
begins with ``\\b``, a lookaround, an optional group or an IGNORECASE letter is tried at every
position of the text, ~5x slower. So each pattern below is written to start with the class of its
possible first characters, followed by ``(?<!\\w.)`` where the published pattern had ``\\b`` (the
same test once that first word character is consumed) and, for word lists, ``(?<=x)rest``
alternatives (the same words in the same order). ``tests/deid_reference.py`` keeps the published
patterns; tests check both give the same matches and the same output.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cmrx.config import DEFAULT_DEID_KEYWORDS


def _line_local(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """Compile with every ``\\s`` kept within a line: the passes scan the whole text at once."""
    return re.compile(re.sub(r"(?<!\[\^)\\s", lambda _: r"[^\S\n]", pattern), flags)


# Non-ASCII characters that IGNORECASE matches to an ASCII letter (Python's sre; a test checks
# every code point), so a first-character class never misses one.
_FOLDS = {"i": "\u0130\u0131", "k": "\u212a", "s": "\u017f"}
_WORD_START = r"(?<!\w.)"  # after a consumed word character: what ``\b`` was before it


def _first_chars(chars: Iterable[str], ignorecase: bool) -> str:
    """A character class of ``chars`` (and, with ``ignorecase``, every character that matches one)."""
    found: set[str] = set()
    for c in chars:
        found.add(c)
        if ignorecase:
            found |= {c.lower(), c.upper(), *_FOLDS.get(c.lower(), "")}
    return "[" + "".join(re.escape(c) for c in sorted(c for c in found if len(c) == 1)) + "]"


def _word_list(words: Sequence[str], ignorecase: bool = False) -> str:
    """``\\b(?:w1|w2|...)`` for words that start with a literal word character, as a pattern that
    starts with a character class: ``[first chars](?<!\\w.)(?:(?<=w)1|...)``. ``words`` are regex
    sources; their order is kept (words with another first character cannot match there)."""
    alternatives = "|".join(f"(?<={re.escape(w[0])}){w[1:]}" for w in words)
    if ignorecase:
        alternatives = f"(?i:{alternatives})"
    return f"{_first_chars((w[0] for w in words), ignorecase)}{_WORD_START}(?:{alternatives})"


# Month names by first letter, in the published order (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|...)
_MONTH_WORDS = ("j(?:an|un|ul)", "feb", "ma(?:r|y)", "a(?:pr|ug)", "se(?:p|pt)", "oct", "nov", "dec")
_MONTHS = rf"(?:{'|'.join(_MONTH_WORDS)})[a-z]*\.?"
# numeric dates end at a non-digit, not a word boundary: '2023-08-02T17:56' is a date and a time.
# Published form, IGNORECASE (``\b`` before each): \d{1,2}(?P<sep>[/.\-])\d{1,2}(?P=sep)\d{2,4}(?!\d)
# (06/17/2023, 13.02.1976, 15-02-2024: one separator) | \d{4}-\d{1,2}-\d{1,2}(?!\d) (2025-09-19) |
# \d{1,2}[\- ]MONTHS[\- ,]+\d{2,4}\b (22-Jun-1949, 17 June 2023) | MONTHS \d{1,2}(?:st|nd|rd|th)?,? \d{4}\b
# (June 17, 2023). Below, the first digit or letter is the leading class.
_NUMERIC_DATE = (
    r"\d?(?P<sep>[/.\-])\d{1,2}(?P=sep)\d{2,4}(?!\d)|\d{3}-\d{1,2}-\d{1,2}(?!\d)"
    rf"|\d?[\- ]{_MONTHS}[\- ,]+\d{{2,4}}\b"
)  # the first three forms, after their first digit
_MONTH_DAY_YEAR_TAIL = r" \d{1,2}(?:st|nd|rd|th)?,? \d{4}\b"  # June 17, 2023 after 'June'
DATE_RE = re.compile(
    rf"[\d{_first_chars('jfmasond', True)[1:-1]}]{_WORD_START}(?i:(?<=\d)(?:{_NUMERIC_DATE})"
    rf"|(?:{'|'.join(f'(?<={m[0]}){m[1:]}' for m in _MONTH_WORDS)})[a-z]*\.?{_MONTH_DAY_YEAR_TAIL})"
)
# DATE_RE where its month-first form cannot match (no text holds its tail): led by digits only,
# ~3x faster than a lead that also takes every a, d, m, n, o, s starting a word.
NUMERIC_DATE_RE = re.compile(rf"\d{_WORD_START}(?i:{_NUMERIC_DATE})")
_DATE_TAIL_RE = re.compile(_MONTH_DAY_YEAR_TAIL, re.IGNORECASE)
# published: (?:\+\d{1,3}[ .\-]?)?(?:\(\d{3}\)\s?|\b\d{3}[ .\-])\d{3}[ .\-]\d{4}\b
PHONE_RE = _line_local(
    r"[+(\d](?:(?<=\+)\d{1,3}[ .\-]?(?:\(\d{3}\)\s?|\b\d{3}[ .\-])|(?<=\()\d{3}\)\s?|(?<=\d)(?<!\w\d)\d{2}[ .\-])"
    r"\d{3}[ .\-]\d{4}\b"
)
LONG_ID_RE = re.compile(r"\d(?<!\w\d)\d{5,}\b")  # published: \b\d{6,}\b
# published (IGNORECASE): \b(?:acc(?:ession)?|case|patient|id|mr|record)\b\.?\s*(?:no\b\.?|number|#)?\s*[#:]?\s*
# (?=[A-Z0-9\-]*\d)[A-Z0-9\-]{4,}\b
ACCESSION_RE = _line_local(
    _word_list(("acc(?:ession)?", "case", "patient", "id", "mr", "record"), ignorecase=True)
    + r"(?i:\b\.?\s*(?:no\b\.?|number|#)?\s*[#:]?\s*(?=[A-Z0-9\-]*\d)[A-Z0-9\-]{4,}\b)"
)
# published: \b(?=[A-Z0-9\-]*\d{4})(?=[A-Z0-9\-]*[A-Z])[A-Z][A-Z0-9\-]{5,}\b (the second lookahead
# holds once the first character is a capital)
ALNUM_ID_RE = re.compile(r"[A-Z](?<!\w.)(?=[A-Z0-9\-]*\d{4})[A-Z0-9\-]{5,}\b")
# published: \b\d{1,6}\s+...
ADDRESS_RE = _line_local(
    r"\d(?<!\w\d)\d{0,5}\s+(?:[A-Z][a-z]+\s+){1,4}(?:Street|St|Drive|Dr|Court|Ct|Circle|Road|Rd|Avenue|Ave|Lane|Ln|Boulevard|Blvd|Way|Place|Pl|Terrace)\b\.?"
    r"(?:,\s*(?:[A-Z][a-z]+\s?){1,3})?(?:,\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"
)
ZIP_RE = _line_local(r"[A-Z](?<!\w.)[A-Z]\s+\d{5}(?:-\d{4})?\b")  # published: \b[A-Z]{2}\s+\d{5}(?:-\d{4})?\b
# published: (?:Dr|Mr|Mrs|Ms|Miss|Pt|Patient|Ref|Referring|Referred by|Prof|Re(?=:)) after \b
_TITLE = _word_list(("Dr", "Mr", "Mrs", "Ms", "Miss", "Pt", "Patient", "Ref", "Referring", "Referred by", "Prof", "Re(?=:)"))
_UPPER, _LOWER, _LETTER = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ", r"[^\W\d_]"
# Mixed case ('LV' is no name), any Latin letters ('Bergström'), name particles ('Van der Berg')
_PARTICLES = ("van", "von", "der", "den", "de", "da", "di", "del", "du", "la", "le", "al", "el", "bin", "ter", "ten")
_NAME_TOKEN = rf"(?:[{_UPPER}](?:[{_LOWER}]|'[{_UPPER}])(?:{_LETTER}|['\-])*|[{_UPPER}]\.|(?:{'|'.join(_PARTICLES)})\b)"
_NAME_STOP = {"id", "data", "parameters", "history", "information", "age", "sex", "no", "number", "is", "was"}
TITLE_NAME_RE = _line_local(
    rf"({_TITLE})(\.?:?\s+(?:(?:Dr|Prof)\.?\s+)?(?:med\.\s+)?)({_NAME_TOKEN}(?:,?\s{_NAME_TOKEN}){{0,3}})"
)
LOWER_TITLE_RE = _line_local(rf"({_word_list(('dr', 'pt'))})(\.?\s+)([a-z][a-z'\-]+)\b")  # published: \b(dr|pt)...
# lower-case words, matched on the lower-cased view (3x faster than re.IGNORECASE)
_SIGNOFF_WORDS = (
    "signed", "dictated", "transcribed", "verified", r"reported by", "reviewed", "approved", "interpreting",
    "interpreted by", "read by", r"analysis\s*:", "reporting", "consultant", "resident", "fellow", "attending",
    "ordering", "referring", "clinician", "scanned by", "performed by", "acquired by", "operator", "technician",
    "radiologist", "cardiologist", "physicist", "tech", "sonographer", "radiographer",
)
SIGNOFF_RE = _line_local(_word_list(_SIGNOFF_WORDS) + r"\b")


class _PresentWords:
    """``\b(?:w1|w2|...)<suffix>`` compiled for only the words whose literal start is in the text.
    A word not in the text matches nowhere, so dropping it changes no match (the others keep
    their order), and the shorter list has fewer first characters to stop at: a text holds a
    few of the 30 sign-off words, not all of them."""

    def __init__(self, words: Sequence[str], suffix: str) -> None:
        self.words, self.suffix = tuple(words), suffix
        self.literals = tuple(re.match(r"[^\\()\[\]?*+{|]+", w).group() for w in self.words)
        self.compiled: dict[tuple[int, ...], re.Pattern[str] | None] = {}

    def __call__(self, text: str) -> re.Pattern[str] | None:
        """The pattern for ``text`` (None when no word can match)."""
        present = tuple(i for i, literal in enumerate(self.literals) if literal in text)
        pattern = self.compiled.get(present)
        if pattern is None and present:
            if len(self.compiled) > 1024:  # bounded: a hostile stream cannot grow it
                self.compiled.clear()
            pattern = self.compiled[present] = _line_local(_word_list([self.words[i] for i in present]) + self.suffix)
        return pattern


_signoff_words = _PresentWords(_SIGNOFF_WORDS, r"\b")
# credentials: 'md' and 'MD' alike, but case matters where a credential is also a word ('do', 'rt ventricle')
# published: \b(?:(?i:md|phd|rdcs|frcr|facc|mbbs|mbchb)|DO|RN|RT)\b
CREDENTIAL_RE = re.compile(
    _first_chars("mprfD", True) + _WORD_START
    + r"(?:(?i:(?<=m)d|(?<=p)hd|(?<=r)dcs|(?<=f)rcr|(?<=f)acc|(?<=m)bbs|(?<=m)bchb)|(?<=D)O|(?<=R)N|(?<=R)T)\b"
)
_MARKUP = "_*~`"  # read as spaces (str.replace: ~20x faster than str.translate)
DASH_SIGNATURE_RE = _line_local(rf"^\s*[-/~]{{1,3}}\s*{_NAME_TOKEN}(?:\s{_NAME_TOKEN}){{1,4}}\s*$", re.MULTILINE)
# HL7 v2 person names (XPN): family^given[^middle...], as exports and interface dumps print them
CARET_NAME_RE = re.compile(rf"(?<!{_LETTER}){_LETTER}(?:{_LETTER}|['\-])*(?:\^{_LETTER}(?:{_LETTER}|['\-. ])*)+")
_CARET_LETTER = re.compile(rf"\^{_LETTER}")  # in every caret name: lines without one are not scanned
# a whole line, or a ';' / '|' / tab / wide-space delimited cell, that is only name-shaped words
# published: (\s*[;|\t]\s*|\s{3,}|\s+/\s+), led by its first character's class (a tab at the start
# is the zero-length \s* before [;|\t])
_CELL_SPLIT = re.compile(r"([\s;|](?:(?<=[;|])\s*|(?<=\s)\s*[;|\t]\s*|(?<=\t)\s*|(?<=\s)\s{2,}|(?<=\s)\s*/\s+))")
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
        keywords = tuple(keywords)
        words = "|".join(re.escape(k) for k in keywords)
        self.keyword_re = re.compile(rf"\b(?:{words})s?\b", re.IGNORECASE)
        # for the lower-cased view; led by a class where every keyword starts with a word character
        lowered = [k.lower() for k in keywords]
        self._keyword_words: _PresentWords | None = None
        if lowered and all(re.match(r"\w", k) for k in lowered):
            alternatives = [k[0] + re.escape(k[1:]) for k in lowered]
            self._keyword_lower_re = re.compile(_word_list(alternatives) + r"s?\b")
            if all(re.escape(k) == k for k in lowered):  # plain words: their literal is the word
                self._keyword_words = _PresentWords(alternatives, r"s?\b")
        else:
            self._keyword_lower_re = re.compile(rf"\b(?:{words.lower()})s?\b")

    def __call__(self, text: str) -> DeidResult:
        """Whole-text passes (one regex scan per pattern, not per line); every pattern stays
        within a line, so decisions are still taken line by line."""
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        result = DeidResult(text="")
        view = text
        for mark in _MARKUP:
            view = view.replace(mark, " ")
        lowered = view.lower()
        keyword_re = self._keyword_words(lowered) if self._keyword_words else self._keyword_lower_re
        keyword_lines = _lines_of(keyword_re, lowered) if keyword_re else set()
        text, view = _scrub(text, view, result.scrubbed)
        views = view.split("\n")
        dropped = keyword_lines | _signoff_lines(view, views)
        candidates = _lines_of(_TWO_NAME_WORDS, view)
        kept: list[str] = []
        for index, line in enumerate(text.split("\n")):
            if index in dropped:
                result.dropped_lines += 1
                continue
            if index in candidates:
                line = _bare_names(line, views[index], result.scrubbed)
            kept.append(line)
        result.text = "\n".join(kept)
        return result


def _scrub(text: str, view: str, counts: dict[str, int]) -> tuple[str, str]:
    """The scrubbed text and its markup-free view (same length, so matches found on the view are
    replaced at the same places in the text)."""
    # replacements are ASCII: a view without other digits keeps none
    ascii_digits = view.isascii() or not any(c.isdecimal() for c in _NON_ASCII.findall(view))
    for name, pattern, replacement in _SCRUBBERS:
        if pattern is CARET_NAME_RE:
            if "^" not in view:
                continue
            matches = _in_lines_with(_CARET_LETTER, pattern, view)
        else:
            if pattern is DATE_RE and _DATE_TAIL_RE.search(view) is None:
                pattern = NUMERIC_DATE_RE
            if ascii_digits:
                pattern = _ASCII_LEAD.get(pattern, pattern)
            matches = pattern.finditer(view)
        pieces_text: list[str] = []
        pieces_view: list[str] = []
        last = 0
        for match in matches:
            new = replacement if isinstance(replacement, str) else replacement(match)
            if new == match.group(0):
                continue
            start = match.start()
            pieces_text += [text[last:start], new]
            pieces_view += [view[last:start], new]
            last = match.end()
            counts[name] = counts.get(name, 0) + 1
        if last:
            text = "".join(pieces_text) + text[last:]
            view = "".join(pieces_view) + view[last:]
    return text, view


def _in_lines_with(mark: re.Pattern[str], pattern: re.Pattern[str], text: str) -> Iterable[re.Match[str]]:
    """``pattern.finditer(text)`` for a line-local pattern whose every match holds a match of
    ``mark``: only the lines with one are scanned."""
    found = mark.search(text)
    while found is not None:
        position = found.start()
        start = text.rfind("\n", 0, position) + 1
        end = text.find("\n", position)
        if end < 0:
            end = len(text)
        yield from pattern.finditer(text, start, end)
        found = mark.search(text, end)


def _lines_of(pattern: re.Pattern[str], text: str) -> set[int]:
    """Indexes of the lines where ``pattern`` matches. No pattern spans a line break, so after a
    hit the search goes on at the next line (the rest of a matched line is not scanned)."""
    lines: set[int] = set()
    search, line, position = pattern.search, 0, 0
    while (match := search(text, position)) is not None:
        start = match.start()
        line += text.count("\n", position, start)
        lines.add(line)
        position = text.find("\n", start) + 1
        if not position:
            break
        line += 1
    return lines


def _signoff_lines(view: str, views: list[str]) -> set[int]:
    """Sign-off lines: a dash signature, or a sign-off word or credential on a line that holds no
    measurement (only the lines with such a word are searched for one)."""
    lowered = view.lower()
    signoff = _signoff_words(lowered)
    words = (_lines_of(signoff, lowered) if signoff else set()) | _lines_of(CREDENTIAL_RE, view)
    words = {index for index in words if MEASUREMENT_RE.search(views[index]) is None}
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


def _ascii_lead(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """``pattern`` with its leading ``\\d`` as ``0-9``: the same matches in a text whose digits
    are all ASCII (``\\d`` is every Unicode decimal digit), and a faster scan (a bitmap class
    instead of a Unicode category test at every character)."""
    source = pattern.pattern
    if source.startswith("\\d"):
        source = "[0-9]" + source[2:]
    else:
        assert source.startswith("[") and "\\d" in source[:source.index("]")], source
        source = source.replace("\\d", "0-9", 1)
    return re.compile(source, pattern.flags)


_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_ASCII_LEAD = {p: _ascii_lead(p) for p in (ADDRESS_RE, DATE_RE, NUMERIC_DATE_RE, PHONE_RE, LONG_ID_RE)}

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
    return _deidentifier(tuple(keywords))(text).text


@functools.lru_cache(maxsize=8)
def _deidentifier(keywords: tuple[str, ...]) -> Deidentifier:
    return Deidentifier(keywords)
