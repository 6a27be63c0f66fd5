"""The fast de-identification patterns give exactly what the published ones give.

``deid_reference`` is the published module, frozen: every pattern there is the readable form;
``extraction.deid`` rewrites them to start with a character class (see its docstring). Checked on
random text built from the tokens the patterns look for, and on whole reports.
"""

import random
import re

import deid_reference as reference
import pytest

from extraction import deid
from helpers import DEV_DIR

PATTERNS = [
    "ADDRESS_RE", "DATE_RE", "PHONE_RE", "ACCESSION_RE", "LONG_ID_RE", "ALNUM_ID_RE", "ZIP_RE", "CARET_NAME_RE",
    "TITLE_NAME_RE", "LOWER_TITLE_RE", "SIGNOFF_RE", "CREDENTIAL_RE", "MEASUREMENT_RE", "DASH_SIGNATURE_RE",
    "_TWO_NAME_WORDS",
]
TOKENS = [
    "Jan", "jan", "JUNE", "Sept", "sep", "\u017fep", "\u017fept", "May", "mar", "Dec", "oct", "Nov", "Aug", "apr", "Feb",
    "jul", "17", "2023", "06", "1", "123", "555", "0112", "9", "\u0663", "12345", "123456", "8812734", "/", "-", ".",
    ",", ":", "#", "+", "(", ")", " ", "  ", "\n", "\t", "^", "'", "_", "*", "st", "nd", "T", "th", "Dr", "Mr", "Mrs",
    "Ms", "Miss", "Pt", "Patient", "Ref", "Referring", "Referred by", "Prof", "Re", "dr", "pt", "med.", "acc",
    "Accession", "ACC", "case", "patient", "id", "\u0130d", "\u0131d", "ID", "mr", "MR", "record", "no", "number",
    "AB12", "X", "Z9", "AB", "MA", "CA", "Street", "St", "Drive", "Hill", "Quarry", "Ave", "Smith", "Jane", "O'Neil",
    "van", "der", "Bergstr\u00f6m", "\u00c9", "\u00df", "signed", "dictated", "reported by", "analysis", "consultant",
    "tech", "md", "MD", "Md", "DO", "do", "RN", "RT", "Rt", "phd", "mbchb", "FRCR", "ml", "cc", "%", "g", "kg", "cm",
    "mm", "m2", "bpm", "mmHg", "in", "LVEF", "55", "=", "\u212a", "k", "a", "x", "\u00e9", "Name", "names", "DOB",
    "dates", "MRN", "Technologist",
]


def _random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 40))) for _ in range(n)]


def _matches(pattern: re.Pattern[str], text: str) -> list:
    return [(m.span(), m.groups()) for m in pattern.finditer(text)]


def test_folds_cover_every_code_point():
    """``_FOLDS`` lists every non-ASCII character IGNORECASE matches to an ASCII letter."""
    letter = re.compile("[a-z]", re.IGNORECASE)
    found = {}
    for code in range(128, 0x110000):
        char = chr(code)
        if letter.fullmatch(char):
            for ascii_letter in "abcdefghijklmnopqrstuvwxyz":
                if re.fullmatch(ascii_letter, char, re.IGNORECASE):
                    found[ascii_letter] = found.get(ascii_letter, "") + char
    assert found == deid._FOLDS


@pytest.mark.parametrize("name", PATTERNS)
def test_pattern_matches_the_published_one(name):
    fast, published = getattr(deid, name), getattr(reference, name)
    texts = _random_texts(3000, seed=PATTERNS.index(name))
    texts += [t.lower() for t in texts[:500]] + [t.upper() for t in texts[:500]]
    for text in texts:
        assert _matches(fast, text) == _matches(published, text), text


@pytest.mark.parametrize("keywords", [deid.DEFAULT_DEID_KEYWORDS, ("Ward", "Bed"), ("#id", "x"), ("\u0130d",)])
def test_keyword_pattern_matches_the_published_one(keywords):
    fast, published = deid.Deidentifier(keywords), reference.Deidentifier(keywords)
    for text in _random_texts(2000, seed=5):
        for view in (text, text.lower()):
            assert _matches(fast._keyword_lower_re, view) == _matches(published._keyword_lower_re, view), view


def _same(fast: deid.Deidentifier, published: reference.Deidentifier, text: str) -> None:
    a, b = fast(text), published(text)
    assert (a.text, a.dropped_lines, a.scrubbed) == (b.text, b.dropped_lines, b.scrubbed), text


def test_random_texts_deidentify_as_published():
    fast, published = deid.Deidentifier(), reference.Deidentifier()
    for text in _random_texts(3000, seed=11):
        _same(fast, published, text)
        _same(fast, published, text.replace("\n", "\r\n"))


def test_reports_deidentify_as_published():
    from training.synth import LAYOUTS, generate

    fast, published = deid.Deidentifier(), reference.Deidentifier()
    texts = [p.read_text() for p in sorted(DEV_DIR.glob("*.txt"))]
    texts += [r.text for r in generate(300, seed=41, layouts=list(LAYOUTS))]
    for text in texts:
        _same(fast, published, text)


def test_numeric_dates_match_the_published_pattern_where_no_month_day_year_can():
    texts = [t for t in _random_texts(6000, seed=23) if deid._DATE_TAIL_RE.search(t) is None]
    assert len(texts) > 1000
    for text in texts:
        assert _matches(deid.NUMERIC_DATE_RE, text) == _matches(reference.DATE_RE, text), text


def test_present_words_find_the_lines_the_full_list_finds():
    rng = random.Random(29)
    words = list(deid._SIGNOFF_WORDS) + ["analysis :", "analysis:", "read  by", "technique", "name", "dates", "mrn"]
    keywords = deid.Deidentifier()
    for _ in range(3000):
        text = "".join(rng.choice(words + TOKENS) for _ in range(rng.randint(1, 30))).lower()
        signoff = deid._signoff_words(text)
        assert (deid._lines_of(signoff, text) if signoff else set()) == reference._lines_of(reference.SIGNOFF_RE, text)
        keyword = keywords._keyword_words(text)
        assert (deid._lines_of(keyword, text) if keyword else set()) == reference._lines_of(
            reference.Deidentifier()._keyword_lower_re, text)


def test_ascii_lead_variants_match_where_every_digit_is_ascii():
    assert all(bool(re.fullmatch(r"\d", chr(c))) == chr(c).isdecimal() for c in range(0x110000))
    texts = [t for t in _random_texts(3000, seed=37) if not any(c.isdecimal() and not c.isascii() for c in t)]
    assert len(texts) > 1000
    for pattern, variant in deid._ASCII_LEAD.items():
        for text in texts:
            assert _matches(variant, text) == _matches(pattern, text), text


def test_cell_split_is_the_published_split():
    rng = random.Random(43)
    pieces = [" ", "  ", "\t", ";", "|", "/", "a", "Bo", "\u00a0", "x y", "Tariq Doe", "[ID]"]
    for _ in range(20000):
        line = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 20)))
        assert deid._CELL_SPLIT.split(line) == reference._CELL_SPLIT.split(line), line
