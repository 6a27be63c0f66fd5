"""Tokens of one line: words, numbers (with the unit written after them) and marks.

One pass of one regex per token, so time is linear in the line length. Numbers that cannot be
a measurement (dates, times, '1.5T', '3D', list markers, ranges, '<50%', '15 minutes') are
flagged here, so the grammar only ever sees candidate values. A unit is read in UCUM forms too
('[lb_av]', 'mm[Hg]', '{beats}/min', '1'); a unit no spelling knows ('[lb_zz]', 'kq') is kept as
written, so its value converts to nothing (null) instead of passing for the canonical unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from extraction.normalize import UNIT_SPELLINGS, WEAK_UNITS, canonical_unit, parse_number, unit_alias
from extraction.backends.rules.lexicon import _one_edit, get_lexicon
from extraction.backends.rules.words import BAD_FOLLOWERS, COMPARATOR_WORDS, MONTHS

# Number shapes that are no plain number: a date, a time, feet and inches, an echo view ('4-ch').
_SHAPES_SRC: Final = r"""
      (?P<date>\d{1,4}(?P<dsep>[./-])\d{1,2}(?P=dsep)\d{2,4}(?!\d))
    | (?P<time>\d{1,2}:\d{2}(?::\d{2})?(?!\d))
    | (?P<ftin>(?P<ft>\d)\s?(?i:'|ft\.?|feet)\s?(?P<inch>\d{1,2}(?:\.\d)?)\s?(?i:''|"|in\b\.?|inch(?:es)?\b)?)
    | (?P<view>[234]\s?-?\s?(?i:chamber|ch|c)\b)
"""
_SHAPES: Final = re.compile(_SHAPES_SRC, re.X)  # which shape a token is, re-read where one was found (rare)
# One token per match: (spaces, word, shape, date separator, number, mark). Words, the commonest
# token, are tried first; the digit shapes only after a lookahead for a digit. The shapes' own groups
# are dropped here (all but the separator the date refers back to): findall builds a tuple of every
# group for every token, and the few shapes are re-read with ``_SHAPES``.
_MASTER: Final = re.compile(
    r"""
    ([^\S\n]*)
    (?:
      ([A-Za-z][A-Za-z0-9]*)
    | (?=\d)(?:(""" + re.sub(r"\(\?P<(?!dsep>)\w+>", "(?:", _SHAPES_SRC) + r""")|(\d+(?:[.,]\d+)?))
    | (\S)
    )
    """,
    re.X,
)


def _unit_pattern(spellings: tuple[str, ...]) -> str:
    """One regex for all unit spellings, as a trie (shared prefixes tested once: 2-3x faster)."""
    trie: dict = {}
    for word in spellings:
        node = trie
        for ch in word.lower():
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict) -> str:
        alts = [(r"\s?" if ch == " " else re.escape(ch)) + emit(node[ch]) for ch in sorted(c for c in node if c)]
        if not alts:
            return ""
        body = "(?:" + "|".join(alts) + ")"
        return body + "?" if "" in node else body

    return emit(trie)


_UNIT_ALT: Final = _unit_pattern(UNIT_SPELLINGS)
# A unit right after a number (up to 4 spaces); never followed by more letters, digits or '/'.
_UNIT_AFTER: Final = re.compile(rf"(?P<gap> {{0,4}})(?P<u>{_UNIT_ALT})(?![A-Za-z0-9^/])", re.I)
# A unit standing alone (a table's unit cell, '[ml]', '(ms)').
_UNIT_ALONE: Final = re.compile(rf"(?P<u>{_UNIT_ALT})(?![A-Za-z0-9^/])", re.I)
_ALONE_OK_AFTER: Final = frozenset("])|:")
# Characters a unit spelling starts with (either case): a word starting otherwise needs no regex.
_UNIT_FIRST: Final = frozenset(ch for u in UNIT_SPELLINGS for ch in (u[0].lower(), u[0].upper()))
_NEXT_WORD: Final = re.compile(r" {1,2}([A-Za-z]+)(?![A-Za-z0-9/])")
# What follows a number up to the next space or cell mark: a unit no spelling knows ('[lb_zz]', 'kq')?
_CHUNK: Final = re.compile(r"(?P<gap> {0,4})(?P<u>[^\s|;,()]+)")
_CODED: Final = re.compile(r"[\[\]{}_^*/]")
_CHUNK_AT: Final = re.compile(r"[^\s|;,():=]+")
SLASH_PROSE: Final = frozenset({"and/or", "w/o", "w/", "s/p", "c/w", "r/o", "h/o", "n/a"})

# Unit words a dictation may misspell ('67 incches', '15 gras'): one edit away is still the unit.
_UNIT_WORDS: Final = tuple(u for u in UNIT_SPELLINGS if (u.isalpha() or "/" in u) and len(u) >= 4)


@dataclass(slots=True, init=False)
class Token:
    """Fields in the order the tokenizer fills them: it passes them by position (keyword arguments
    double the cost of creating a token, and every line creates dozens)."""

    kind: str  # 'word' | 'num' | 'unit' | 'mark'
    start: int
    end: int
    text: str  # words lower-cased; marks as written; numbers as written
    spaces: int = 0  # spaces before the token
    value: float | None = None  # num: parsed value (inches for ft/in)
    title: bool = False  # word written 'Ravi': a name more likely than the abbreviation 'RAVI'
    caps: bool = False  # word written in capitals ('BLD'): in a mixed-case line, a code rather than prose
    value2: float | None = None  # num: second number of a slash pair ('132/77')
    end2: int = 0  # num: end of the second number of a pair
    unit: str | None = None  # num: unit written after it; unit: the unit
    unit_start: int = 0
    unit_end: int = 0
    unit_gap: int = 0  # spaces between number and unit
    flag: str = ""  # num: '' | 'junk' | 'range' | 'pair2'; word: 'view'

    # An explicit __init__ (init=False): compiled, it is native code; the one dataclass writes is
    # interpreted Python even in a compiled build.
    def __init__(self, kind: str, start: int, end: int, text: str, spaces: int = 0, value: float | None = None,
                 title: bool = False, caps: bool = False, value2: float | None = None, end2: int = 0,
                 unit: str | None = None, unit_start: int = 0, unit_end: int = 0, unit_gap: int = 0,
                 flag: str = "") -> None:
        self.kind = kind
        self.start = start
        self.end = end
        self.text = text
        self.spaces = spaces
        self.value = value
        self.title = title
        self.caps = caps
        self.value2 = value2
        self.end2 = end2
        self.unit = unit
        self.unit_start = unit_start
        self.unit_end = unit_end
        self.unit_gap = unit_gap
        self.flag = flag

    @property
    def value_end(self) -> int:
        """End of the number including its unit (and the pair's second number)."""
        return max(self.end, self.end2, self.unit_end)


def tokenize(line: str) -> list[Token]:
    """Split one line into tokens; numbers carry their unit; unusable numbers are flagged.

    ``findall`` returns one tuple per token (leading spaces first), so positions are running
    sums: no match objects in the loop, the hot path of the whole extractor. The last token is
    kept in a local (``prev``) and the cheap tests that rule out a standalone unit come first.
    """
    toks: list[Token] = []
    append = toks.append
    skip = 0  # end of the unit the last number consumed
    pos = 0
    has_num = False
    prev: Token | None = None  # toks[-1]
    # typed: a compiled build unpacks each match as a tuple of six str, not through the iterator protocol
    matches: list[tuple[str, str, str, str, str, str]] = _MASTER.findall(line)
    for sp, word, shape, _, num, mark in matches:
        spaces = len(sp)
        begin = pos + spaces
        if word:
            pos = end = begin + len(word)
            if begin < skip:
                continue
            if word[0] in _UNIT_FIRST and (prev is None or spaces >= 2 or (prev.kind == "mark" and prev.text in "[(|")):
                unit = _standalone_unit(line, toks, begin, spaces)
                if unit is not None:
                    append(unit)
                    prev = unit
                    skip = unit.end
                    continue
            prev = Token("word", begin, end, word.lower(), spaces, None,
                         len(word) >= 4 and word[0].isupper() and word[1:].islower(), word.isupper())
            append(prev)
        elif mark:
            pos = end = begin + 1
            if begin < skip:
                continue
            unit = _standalone_unit(line, toks, begin, spaces) if mark == "%" else None
            prev = unit or Token("mark", begin, end, mark, spaces)
            append(prev)
        elif num:
            pos = end = begin + len(num)
            if begin < skip:
                continue
            prev = Token("num", begin, end, num, spaces, float(num) if "," not in num else parse_number(num))
            _attach_unit(line, prev)
            append(prev)
            skip = prev.unit_end
            has_num = True
        else:
            text = shape
            pos = end = begin + len(text)
            if begin < skip:
                continue
            m = _SHAPES.match(line, begin)  # the same alternative as in _MASTER, at the same place
            assert m is not None
            if m.group("ftin"):
                inches = int(m.group("ft")) * 12 + float(m.group("inch"))
                prev = Token("num", begin, end, text, spaces, value=inches, unit="in", unit_start=end, unit_end=end)
                has_num = True
            elif m.group("view"):
                prev = Token("word", begin, end, text[0] + "ch", spaces, flag="view")
            else:
                prev = Token("num", begin, end, text, spaces, flag="junk")
                has_num = True
            append(prev)
    if "[" in line or "{" in line:
        toks = _coded_units(line, toks)
    if has_num:  # both only ever touch numbers
        if "|" in line:
            _cell_units(line, toks)
        _flag_numbers(line, toks)
    return toks


def _attach_unit(line: str, tok: Token) -> None:
    if tok.value is None:
        tok.flag = "junk"
        return
    u = _UNIT_AFTER.match(line, tok.end)
    if u is not None:
        tok.unit = u.group("u")
        tok.unit_gap = len(u.group("gap"))
        tok.unit_start, tok.unit_end = u.start("u"), u.end()
        return
    nxt = line[tok.end:tok.end + 1]
    if nxt.isalpha() or (nxt in ".," and line[tok.end + 1:tok.end + 2].isdigit()):
        tok.flag = "junk"  # '1.5T', '3D', '34Y', '4.0.1'
        return
    w = _NEXT_WORD.match(line, tok.end)
    if w is not None and len(w.group(1)) >= 4:
        unit = _unit_typo(w.group(1).lower())
        if unit is not None:
            tok.unit, tok.unit_gap = unit, len(w.group(0)) - len(w.group(1))
            tok.unit_start, tok.unit_end = w.start(1), w.end(1)
            return
    c = _CHUNK.match(line, tok.end)
    if c is not None:
        raw = c.group("u").rstrip(".:")
        if _unit_like(raw, len(c.group("gap"))):
            # a misspelt unit word ('beatts/min') is that unit; any other gives the value null
            typo = _unit_typo(raw.lower()) if raw.replace("/", "").isalpha() and len(raw) >= 6 else None
            tok.unit, tok.unit_gap = typo or raw, len(c.group("gap"))
            tok.unit_start = c.start("u")
            tok.unit_end = tok.unit_start + len(raw)


def _unit_like(raw: str, gap: int) -> bool:
    """A token after a number that reads as a unit no spelling knows: '[lb_zz]', '{beat}', 'ml/{b}', 'kq'.

    Ordinary words ('and', 'in', 'severely') and marks are prose; a plain word counts only when short
    (units are: 'kq', 'mmol') and right after the number, since two or more spaces lead to the next
    column of a table.
    """
    if not raw or raw[0] in "-+=<>~%'\"" or not any(ch.isalpha() for ch in raw):
        return False
    if raw[0] == "/" and raw[1:2].isdigit():
        return False  # '132/77'
    if _CODED.search(raw):
        return raw.lower() not in SLASH_PROSE
    return gap <= 1 and len(raw) <= 5 and raw.isalnum() and get_lexicon().unknown(raw.lower())


def _coded_units(line: str, toks: list[Token]) -> list[Token]:
    """'[lb_av]', '{beat}', 'mm[Hg]' or '[BC^2]' not after a number: one unit token, known or not.

    A bracketed vocabulary or prose word ('[LV]', '[NAME]') stays a word.
    """
    out: list[Token] = []
    end = -1
    for t in toks:
        if t.start < end:
            continue
        if t.kind == "mark" and t.text in "[{":
            left = t.start
            while left > 0 and not line[left - 1].isspace() and line[left - 1] not in "|;,():=":
                left -= 1
            keep = len(out)
            while keep and out[keep - 1].start >= left:
                keep -= 1  # 'mm' of 'mm[Hg]' belongs to the unit
            m = _CHUNK_AT.match(line, left)
            if m is not None and (not keep or out[keep - 1].end <= left):  # the whole chunk
                unit = _coded_unit(m.group(0))
                if unit is not None:
                    del out[keep:]
                    end = m.end()
                    out.append(Token("unit", left, end, unit, t.spaces, unit=unit, unit_start=left, unit_end=end))
                    continue
        out.append(t)
    return out


def _coded_unit(chunk: str) -> str | None:
    if not any(ch in chunk for ch in "]}") or chunk[0].isdigit() or not any(ch.isalpha() for ch in chunk):
        return None
    inner = chunk[1:-1] if chunk[0] + chunk[-1] in ("[]", "{}") else None
    if inner is not None and canonical_unit(inner) is not None:
        return inner  # '[ml]', '[mL/m^2]'
    if canonical_unit(chunk) is not None:
        return chunk  # '[lb_av]', 'mm[Hg]', '{beats}/min'
    if inner is not None and inner.isalpha() and not get_lexicon().unknown(inner.lower()):
        return None  # '[LV]', '[NAME]'
    return chunk


def _cell_units(line: str, toks: list[Token]) -> None:
    """'WEIGHT|183|[lb_av]': a unit alone in the cell after a value is that value's unit.

    A plain unreadable word there ('kq') is an unknown unit, and '1' the UCUM dimensionless unit.
    """
    for i in range(len(toks) - 2):
        num, bar, cell = toks[i], toks[i + 1], toks[i + 2]
        if num.kind != "num" or num.unit is not None or num.flag or bar.kind != "mark" or bar.text != "|":
            continue
        after = toks[i + 3] if i + 3 < len(toks) else None
        if after is not None and not (after.kind == "mark" and after.text == "|"):
            continue
        if cell.kind == "word" and _unit_like(line[cell.start:cell.end], 0):
            cell.kind, cell.unit = "unit", line[cell.start:cell.end]
            cell.unit_start, cell.unit_end = cell.start, cell.end
        elif cell.kind == "num" and cell.text == "1" and cell.unit is None:
            cell.kind, cell.unit = "unit", "1"
            cell.unit_start, cell.unit_end = cell.start, cell.end
        if cell.kind == "unit":
            num.unit, num.unit_gap = cell.unit, cell.start - num.end
            num.unit_start, num.unit_end = cell.start, cell.end


@lru_cache(maxsize=4096)
def _unit_typo(word: str) -> str | None:
    """'incches' -> 'inches': one edit from unit words that all mean one unit ('gras': gram, grams)."""
    close = sorted(u for u in _UNIT_WORDS if u[0] == word[0] and _one_edit(word, u))
    units = {unit_alias(u) for u in close}
    return close[0] if close and len(units) == 1 and None not in units else None


def _standalone_unit(line: str, toks: list[Token], start: int, spaces: int) -> Token | None:
    """A unit not written after a number: '[ml]', '(ms)', a unit column cell."""
    prev = toks[-1] if toks else None
    opener = prev is not None and prev.kind == "mark" and prev.text in "[(|" and spaces == 0
    if not (opener or prev is None or spaces >= 2 or (prev.kind == "mark" and prev.text == "|")):
        return None
    if line[start] not in _UNIT_FIRST:
        return None
    m = _UNIT_ALONE.match(line, start)
    if m is None:
        return None
    after = line[m.end():m.end() + 1]
    rest = line[m.end():m.end() + 2]
    if not (after == "" or after in _ALONE_OK_AFTER or rest == "  " or (after == " " and not opener and rest == " |")):
        return None
    unit = m.group("u")
    bracket = prev is not None and prev.kind == "mark" and prev.text in "[|"
    if unit.lower() in WEAK_UNITS and not bracket and unit.lower() not in ("in", "m"):
        return None
    return Token("unit", m.start(), m.end(), unit, spaces, unit=unit, unit_start=m.start(), unit_end=m.end())


def _is_year(tok: Token) -> bool:
    return tok.unit is None and tok.text.isdigit() and len(tok.text) == 4 and 1950 <= int(tok.text) <= 2049


def _to_number(toks: list[Token], i: int) -> bool:
    """'from <num> ... to <num>' (or 'to <num> from <num>'): a change, the 'from' number is old."""
    ahead = toks[i + 1:i + 4]
    for j, t in enumerate(ahead[:-1]):
        if t.kind == "word" and t.text == "to" and ahead[j + 1].kind == "num":
            return True
    behind = toks[max(0, i - 5):i - 1]
    return any(t.kind == "word" and t.text == "to" and k + 1 < len(behind) and behind[k + 1].kind == "num"
               for k, t in enumerate(behind))


def _flag_numbers(line: str, toks: list[Token]) -> None:
    """Ranges, slash pairs, comparators, dimensions, list markers, counts and durations."""
    first_real = next((i for i, t in enumerate(toks) if not (t.kind == "mark" and t.text in "-*#>")), None)
    last = len(toks) - 1
    for i, tok in enumerate(toks):
        if tok.kind != "num" or tok.flag:
            continue
        prev = toks[i - 1] if i > 0 else None
        prev2 = toks[i - 2] if i > 1 else None
        nxt = toks[i + 1] if i < last else None
        nxt2 = toks[i + 2] if i + 1 < last else None
        if prev is not None:
            # comparators and '+/-' tolerances (every test below gives 'junk': grouped by the kind before)
            pk, pt = prev.kind, prev.text
            if pk == "mark":
                if (pt in "<>" and not (pt == ">" and prev.spaces == 0 and prev2 is not None and prev2.kind == "word")) \
                        or (prev2 is not None and ((pt == "=" and prev2.text in "<>") or (pt == "-" and prev2.text == "/")
                                                   or (pt == "*" and prev2.kind == "num"))):
                    tok.flag = "junk"  # '<50%', '> 55 %' (but '<td>55' is a markup tag, not a comparator)
            elif pk == "word" and (pt in COMPARATOR_WORDS or pt == "x"):
                tok.flag = "junk"
            if pt == "to" and prev2 is not None and prev2.text == "up":
                tok.flag = "junk"  # 'up to 25 mm
        if (prev is not None and prev.kind == "word" and prev.text in MONTHS) or \
                (nxt is not None and nxt.kind == "word" and nxt.text in MONTHS):
            tok.flag = "junk"  # 'January 15, 2021', '15 Jan 2021'
        elif tok.unit is None and _is_year(tok):
            tok.flag = "year"  # 'in 2019': no value, and it dates the value before it
        elif prev is not None and prev.kind == "word" and prev.text == "from" and _to_number(toks, i):
            tok.flag = "junk"  # 'improved from 35% to 45%': the first is the old value
        if tok.flag:
            continue
        # list markers: '1.' or '2)' first on the line
        if i == first_real and tok.unit is None and nxt is not None and nxt.kind == "mark" and nxt.text in ".)" \
                and nxt.start == tok.end and (nxt.end >= len(line) or line[nxt.end] == " "):
            tok.flag = "junk"
            continue
        # ranges '58 - 76', '(57-77)', '1.5 to 2.0'
        if nxt is not None and nxt2 is not None and nxt2.kind == "num" and nxt2.value is not None and (
            (nxt.kind == "mark" and nxt.text == "-" and nxt.spaces <= 1 and nxt2.spaces <= 1
             and (tok.unit is None or tok.unit_gap == 0 and tok.unit == nxt2.unit))
            or (nxt.kind == "word" and nxt.text == "to" and tok.unit is None)
        ):
            tok.flag = "range"
            nxt2.flag = "range"
            continue
        # slash pairs '132/77', '20/45 %' (the second number's unit is the pair's)
        if tok.unit is None and nxt is not None and nxt2 is not None and nxt.kind == "mark" and nxt.text == "/" \
                and nxt2.kind == "num" and nxt2.value is not None and not nxt2.flag and nxt.spaces <= 2 and nxt2.spaces <= 2:
            tok.value2, tok.end2 = nxt2.value, nxt2.end
            tok.unit, tok.unit_start, tok.unit_end, tok.unit_gap = nxt2.unit, nxt2.unit_start, nxt2.unit_end, nxt2.unit_gap
            nxt2.flag = "pair2"
            continue
        # counts, durations, doses: '15 minutes', '42-year-old', '3 x 2 cm'
        if tok.unit is None and nxt is not None:
            follower = nxt
            if nxt.kind == "mark" and nxt.text == "-" and nxt2 is not None and nxt.spaces == 0:
                follower = nxt2
            if follower.kind == "word" and follower.text in BAD_FOLLOWERS:
                tok.flag = "junk"
            elif follower.kind == "mark" and follower.text == "*":
                tok.flag = "junk"
        elif tok.unit is not None and nxt is not None and nxt.kind == "word" and nxt.text == "x":
            tok.flag = "junk"
