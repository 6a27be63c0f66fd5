"""Walks a report line by line: headings set the context, tables set columns, lines give values.

Input bounds keep time linear and small on hostile text: only the first MAX_TEXT characters are
read and lines longer than MAX_LINE are skipped (no report writes a measurement that way).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, Sequence

from extraction.backends.rules.grammar import (CHAMBER_WORDS, Candidate, Context, Item, LineParser, lexicalize,
                                               unread_chamber)
from extraction.backends.rules.lexicon import Lexicon
from extraction.normalize import canonical_unit
from extraction.backends.rules.tables import Grid, detect_header, is_separator
from extraction.backends.rules.tokens import Token, tokenize
from extraction.backends.rules.words import COMMON_ENGLISH

MAX_TEXT: Final = 300_000
MAX_LINE: Final = 2_000
HEADING_MAX: Final = 100
PREFIX_MAX_WORDS: Final = 6
BULLETS: Final = frozenset("-*+>#")
# Section words after which nothing said before about sides applies.
SECTION_RESET: Final = frozenset({"impression", "impressions", "impr", "conclusion", "conclusions", "summary",
                                  "assessment", "opinion", "interpretation", "findings", "comment", "comments",
                                  "history", "indication", "technique", "comparison", "report"})
_SENTENCE_INSIDE: Final = re.compile(r"[A-Za-z)]\.\s+[A-Z]")
HEADING_NEG_MAX_WORDS: Final = 6  # 'PRIOR STUDY (2021)' is a section of old values; a long sentence is not
# Lines whose reading is kept: those without a digit (headings, prose, table headers: boilerplate that
# repeats across distinct reports, 86 % of such lines in synthetic ones; a line with a number mostly
# does not, 11 %). Kept objects are what the cyclic GC walks: caching every line made it collect ~40x
# as often and cost more than the cache saved. ~4 KB a line, so at most ~16 MB.
LINE_CACHE_MAX: Final = 4096
CACHED_LINE_MAX: Final = 256  # longer lines are read afresh (no boilerplate is that long)


def read_line(line: str, lex: Lexicon) -> tuple[tuple[Token, ...], tuple[Item, ...]]:
    """Tokens and items of one line: they depend on nothing but its text (and the lexicon).

    ``_cached_line`` keeps them by text (for lines without a digit, up to CACHED_LINE_MAX characters).
    The cached tokens and items are shared by every report that has the line, so nothing downstream
    may change them: tuples, so a list operation fails loudly; the only tokens anything edits later
    are numbers (a table row moves a number's unit to the row, a unit cell flags its '1'), and a line
    without a digit has none. ``lru_cache`` is safe to share between threads (at worst a line is read
    twice).
    """
    toks = tokenize(line)
    return tuple(toks), tuple(lexicalize(toks, lex))


_cached_line: Final = lru_cache(maxsize=LINE_CACHE_MAX)(read_line)


def clear_line_cache() -> None:
    """Forget the lines read so far (benchmarks time reports whose lines were never seen)."""
    _cached_line.cache_clear()


NOISE_SAMPLE: Final = 6_000
MIN_KNOWN_SHARE: Final = 0.10  # share of 3+ letter words that are report or common English words
MAX_CONTROL_SHARE: Final = 0.01
_WORD: Final = re.compile(r"[A-Za-z]{3,}")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_DIGIT: Final = re.compile(r"\d")
PREFIX_WORDS_CHARS: Final = 900  # looks_like_text reads this many characters first
_PREFIX_CUT: Final = re.compile(r"[^A-Za-z]")


def looks_like_text(text: str) -> bool:
    """Random bytes or characters are no report: no value may come out of them.

    A report passes on its first words: once the known words of a prefix reach the share of the
    most words the whole sample could hold, the rest cannot change the answer.
    """
    sample = text[:NOISE_SAMPLE]
    if not sample:
        return True
    if _CONTROL.search(sample) is not None and len(_CONTROL.findall(sample)) > MAX_CONTROL_SHARE * len(sample):
        return False
    known_word = _known_words().__contains__
    lowered = sample.lower()
    cut = _PREFIX_CUT.search(lowered, min(len(lowered), PREFIX_WORDS_CHARS))  # between two words
    if cut is not None:
        first = _WORD.findall(lowered, 0, cut.start())
        most = len(first) + (len(lowered) - cut.start() + 1) // 4  # a later word takes a separator and 3 letters
        if sum(map(known_word, first)) >= MIN_KNOWN_SHARE * most:
            return True
    words = _WORD.findall(lowered)
    if len(words) < 20:
        return True  # too short to judge: 'LVEF 55 %' is a fine report line
    known = sum(map(known_word, words))
    return known >= MIN_KNOWN_SHARE * len(words)


def _known_words() -> frozenset[str]:
    global _KNOWN
    if _KNOWN is None:
        from extraction.backends.rules.lexicon import get_lexicon

        _KNOWN = COMMON_ENGLISH | frozenset(w for k in get_lexicon().entries for w in k if w.isalpha())
    return _KNOWN


_KNOWN: frozenset[str] | None = None


def mask_csv(line: str, every_comma: bool = False) -> str | None:
    """'LVEDV,150,mL' -> 'LVEDV|150|mL' (same length, so offsets hold); None if not a CSV row.

    ``every_comma``: the row belongs to a comma-separated table, so '81,205' is two cells.
    """
    for delim in (",", ";", "\t"):
        if line.count(delim) < 2 or (delim != "\t" and delim + " " in line and '"' not in line):
            continue
        count, out, quoted = 0, [], False
        for i, c in enumerate(line):
            if c == '"':
                quoted = not quoted
                out.append(" ")
            elif c == delim and not quoted:
                nxt = line[i + 1:i + 2]
                if nxt == " " and delim != "\t":
                    count = -1000  # prose: ', ' separates words, not cells
                if delim == "," and line[i - 1:i].isdigit() and nxt.isdigit() and not every_comma:
                    out.append(c)  # '99,3' is a decimal comma, not a cell boundary
                else:
                    count += 1
                    out.append("|")
            else:
                out.append(c)
        if count >= 2 and "|" not in line:
            return "".join(out)
    return None


class DocumentReader:
    def __init__(self, lex: Lexicon) -> None:
        self.lex = lex
        self.parser = LineParser(lex)

    def candidates(self, text: str, checked: bool = False) -> list[Candidate]:
        """All candidates of the report, spans as absolute offsets in ``text``.

        ``checked``: the caller already knows the text passes ``looks_like_text``.
        """
        ctx = Context()
        grid: Grid | None = None
        out: list[Candidate] = []
        if not checked and not looks_like_text(text):
            return out
        offset = 0
        for raw in text[:MAX_TEXT].split("\n"):
            start = offset
            offset += len(raw) + 1
            if not raw.strip() or len(raw) > MAX_LINE:
                ctx.paragraph()
                if grid is not None:
                    out.extend(grid.finish())
                grid = None
                continue
            if is_separator(raw):
                continue
            digitless = _DIGIT.search(raw) is None
            if grid is None and digitless and "|" not in raw and "\t" not in raw \
                    and "  " not in raw.strip() and ("," not in raw or ", " in raw) and ";" not in raw:
                self._context_line(raw, ctx)  # no number and one cell: no value, no table header
                continue
            line = mask_csv(raw) or raw
            if grid is not None and grid.comma and line.count("|") != grid.bars:
                line = mask_csv(raw, every_comma=True) or line
            toks, items = (_cached_line if digitless and len(line) <= CACHED_LINE_MAX else read_line)(line, self.lex)
            if grid is not None and grid.absorb_units(line, toks):
                continue
            if grid is not None and grid.accepts(line, toks):
                grid.start_row(line, toks)
                cands = self.parser.parse(items, line, ctx, row=grid, content_start=_content_start(items))
                first = self.parser.first_label
                if first is not None and not self.parser.continued:
                    grid.prev_label = first
                    grid.prev_label.abs_span = (grid.prev_label.start + start, grid.prev_label.end + start)
                row_label = self.parser.row_label or first  # no field part of its own: one study's row
                study = row_label is not None and set(row_label.slots) <= {"state"}
                out.extend(grid.add_row(line, toks, _absolute(cands, start), study))
                continue
            if grid is not None:
                out.extend(grid.finish())
            plain = digitless or all(t.flag for t in toks if t.kind == "num")  # a header holds no value
            grid = detect_header(line, toks, items, start) if plain else None
            if grid is not None:
                grid.comma = line != raw and "," in raw and raw.count(",") == line.count("|")
                continue
            content_start, line_neg = self._prefix_heading(items, ctx)
            cands = self.parser.parse(items, line, ctx, line_neg=line_neg, content_start=content_start)
            if not cands and _looks_like_heading(raw) and not _measurement(items):
                self._heading(items, ctx)
            out.extend(_absolute(cands, start))
        if grid is not None:
            out.extend(grid.finish())
        return out

    def _context_line(self, raw: str, ctx: Context) -> None:
        """A line without numbers: only its heading role and the sides it mentions matter."""
        items = (_cached_line if len(raw) <= CACHED_LINE_MAX else read_line)(raw, self.lex)[1]
        self._prefix_heading(items, ctx)
        prev = None
        for it in items:
            if it.kind == "term":
                entry = it.entry
                assert entry is not None  # a term item always has its entry
                for slot, part in entry.parts:
                    if slot == "side":
                        for side in part.split("+"):
                            ctx.mention(side)
            elif it.kind == "word" and (it.unknown or prev is not None and prev.unknown):
                groups = unread_chamber(prev, it)
                if groups:
                    ctx.mention_unread(groups)
                ctx.para_unknown = ctx.para_unknown or it.unknown
            prev = it
        if _looks_like_heading(raw):
            self._heading(items, ctx)

    @staticmethod
    def _heading(items: Sequence[Item], ctx: Context) -> None:
        slot_sets = [dict(it.entry.parts) for it in items if it.kind == "term" and it.entry is not None]
        negs = [it.entry.neg for it in items
                if it.kind == "neg" and it.entry is not None and it.entry.neg in ("prior", "stress")]
        short = sum(it.kind in ("word", "term", "neg") for it in items) <= HEADING_NEG_MAX_WORDS
        ctx.heading(slot_sets, negs[0] if negs and short else None, any(it.unknown for it in items))

    def _prefix_heading(self, items: Sequence[Item], ctx: Context) -> tuple[int, str | None]:
        """'RIGHT VENTRICLE: EDV ...' -> context RV for this line and the next ones.

        Returns where the line's content starts (after bullets and the heading) and the
        negation the heading puts on the line ('Stress perfusion: ...', 'Prior study: ...').
        """
        first = _content_start(items)
        colon = _colon(items)
        if colon is None or colon == 0:
            return first, None
        head = items[:colon]
        words = [it for it in head if it.kind in ("word", "term", "neg")]
        if len(words) > PREFIX_MAX_WORDS or any(
                it.kind == "unit" or (it.kind == "num" and it.tok is not None and it.tok.unit) for it in head):
            return first, None  # 'Prior study (2019):' is a heading, 'HR 60 bpm:' is not
        if any(it.kind == "term" and it.entry is not None and any(s == "qty" for s, _ in it.entry.parts)
               for it in head):
            return first, None  # 'LA VOLUME: 85 ml' is a label, not a heading
        sides = [dict(it.entry.parts) for it in head
                 if it.kind == "term" and it.entry is not None and any(s == "side" for s, _ in it.entry.parts)]
        unknown = any(it.unknown for it in head)  # 'XQ VENTRICLE:' may name the side its lines are about
        if sides or unknown or any(it.text in SECTION_RESET for it in head if it.kind == "word"):
            ctx.heading(sides, None, unknown)
        chambers = "".join(CHAMBER_WORDS.get(it.text, "") for it in head if it.kind == "word")
        if chambers and not sides:  # 'Systemic ventricle:': a chamber whose side we cannot tell
            ctx.heading([], None, unknown)
            ctx.mention_unread(chambers)
        negs = [it.entry.neg for it in head
                if it.kind == "neg" and it.entry is not None and it.entry.neg in ("prior", "stress")]
        content = items[colon + 1].start if colon + 1 < len(items) else first
        return content, negs[0] if negs else None


def _colon(items: Sequence[Item]) -> int | None:
    """Index of the first ':' item (most lines have none: one pass over the texts finds that)."""
    texts = [it.text for it in items]
    if ":" not in texts:
        return None
    for i, it in enumerate(items):
        if it.kind == "mark" and it.text == ":":
            return i
    return None


def _content_start(items: Sequence[Item]) -> int:
    for it in items:
        if it.kind == "mark" and it.text in BULLETS:
            continue
        if it.kind == "num" and it.tok is not None and it.tok.flag == "junk":
            continue  # list marker '1.'
        if it.kind == "mark" and it.text in ".)":
            continue
        return it.start
    return 0


def _measurement(items: Sequence[Item]) -> bool:
    """'- ESVi 121' or 'XQ.blood = 1801 ms' gave no value but is no heading: it sets no context."""
    nums = [it.tok for it in items if it.kind == "num" and it.tok is not None and not it.tok.flag]
    return bool(nums) and (any(t.unit and canonical_unit(t.unit) for t in nums) or any(
        it.kind == "unit" or it.kind == "mark" and it.text == "=" for it in items) or any(
        it.kind == "term" and it.entry is not None and any(slot == "qty" for slot, _ in it.entry.parts)
        for it in items))


def _looks_like_heading(raw: str) -> bool:
    s = raw.strip()
    return len(s) <= HEADING_MAX and s[-1] not in ".?!" and not _SENTENCE_INSIDE.search(s)


def _absolute(cands: list[Candidate], offset: int) -> list[Candidate]:
    for c in cands:
        c.spans = [(s + offset, e + offset) for s, e in c.spans]
    return cands
