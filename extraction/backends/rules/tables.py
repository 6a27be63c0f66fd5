"""Tables: a header line names the columns, each row number takes the parts of its column.

Columns are found by '|' cells (markdown/ASCII box tables, CSV after masking) or by runs of two
or more spaces (fixed-width exports). A column is a side or a quantity ("LV", "RV", "EDV (ml)"),
a plain value column ("Value", "Result"), the unit column, or ignored (normal/reference ranges,
prior study, stress). LV/RV as columns and LV/RV as rows are the same thing: the row label's
parts and the column's parts are merged.

With fields as columns, a row whose label names no field part is one study's values ('Current',
'Prior', a date). Only the current study's row is kept, and only when it can be told and its
cells line up with the header; a column must name its field alone (no side from the context).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Final, Sequence

from extraction.backends.rules.grammar import Candidate, Item, Label
from extraction.backends.rules.tokens import Token

VALUE_WORDS: Final = frozenset({"value", "values", "result", "results", "measured", "measurement", "patient", "current",
                         "today", "actual", "study", "this", "rest", "resting", "observed"})
UNIT_WORDS: Final = frozenset({"unit", "units", "uom"})
# Words that mark a study row as the current one ('Today', 'This study', 'Current exam').
CURRENT_WORDS: Final = frozenset({"current", "today", "this", "actual", "now", "present", "latest", "todays"})
_DATE: Final = re.compile(r"^(\d{1,4})([./-])(\d{1,2})\2(\d{2,4})$")
IGNORED_NEGS: Final = frozenset({"ref", "prior", "stress"})
_WS_CELL: Final = re.compile(r"\S+(?: \S+)*")
PLACEHOLDERS: Final = frozenset({"-", "--", "---", "n/a", "NA", "na", "N/A"})
_BARE_VALUE: Final = re.compile(r"^\d+(?:[.,]\d+)?%?$")
_SEPARATOR: Final = re.compile(r"^[\s\-=+|:_*~.]*$")


@dataclass(slots=True, init=False)
class GridColumn:
    kind: str  # 'label' | 'value' | 'feature' | 'unit' | 'ignore' | 'empty'
    index: int
    start: int
    end: int
    slots: dict[str, str] = field(default_factory=dict)
    unit: str | None = None
    abs_span: tuple[int, int] | None = None
    unknown: bool = False  # the header cell has a word we cannot read: its field needs every part named

    # An explicit __init__ (init=False), as ``Token``'s: compiled, it is native code.
    def __init__(self, kind: str, index: int, start: int, end: int, slots: dict[str, str] | None = None,
                 unit: str | None = None, abs_span: tuple[int, int] | None = None, unknown: bool = False) -> None:
        self.kind = kind
        self.index = index
        self.start = start
        self.end = end
        self.slots = {} if slots is None else slots
        self.unit = unit
        self.abs_span = abs_span
        self.unknown = unknown


def _last_line(cells_of: Callable[[str], list[tuple[int, int]]]) -> Callable[[str], tuple[tuple[int, int], ...]]:
    """Remember the cells of the last line: a row's cells are asked for once per number in it."""
    memo: tuple[str | None, tuple[tuple[int, int], ...]] = (None, ())

    def cached(line: str) -> tuple[tuple[int, int], ...]:
        nonlocal memo
        known, cells = memo  # one tuple, replaced whole: safe when threads share it
        if known != line:
            cells = tuple(cells_of(line))
            memo = (line, cells)
        return cells

    cached.__doc__ = cells_of.__doc__
    return cached


@_last_line
def pipe_cells(line: str) -> list[tuple[int, int]]:
    """Cells between '|' marks; a leading '|' opens the first cell."""
    bars = [i for i, c in enumerate(line) if c == "|"]
    cells: list[tuple[int, int]] = []
    first = line.lstrip()
    if not first.startswith("|"):
        cells.append((0, bars[0] if bars else len(line)))
    for a, b in zip(bars, bars[1:]):
        cells.append((a + 1, b))
    if bars and line[bars[-1] + 1:].strip():
        cells.append((bars[-1] + 1, len(line)))
    return cells


@_last_line
def ws_cells(line: str) -> list[tuple[int, int]]:
    return [m.span() for m in _WS_CELL.finditer(line)]


def is_separator(line: str) -> bool:
    return ("-" in line or "=" in line or "_" in line) and bool(line.strip()) and bool(_SEPARATOR.match(line))


@dataclass(slots=True, init=False)
class StudyRow:
    """A data row whose label cell names no field part (fields are the columns): one study's values."""

    cands: list[Candidate]
    current: bool  # marked 'Today', 'Current', 'This study'
    date: tuple[int, ...] | None
    aligned: bool

    # An explicit __init__ (init=False), as ``Token``'s: compiled, it is native code.
    def __init__(self, cands: list[Candidate], current: bool, date: tuple[int, ...] | None, aligned: bool) -> None:
        self.cands = cands
        self.current = current
        self.date = date
        self.aligned = aligned


@dataclass(init=False)
class Grid:
    pipe: bool
    columns: list[GridColumn]
    prev_label: Label | None = None
    row_unit: str | None = None
    line: str = ""
    continues: bool = False
    bars: int = 0  # '|' marks in the header line: every study row must have as many
    comma: bool = False  # a comma-separated export: in its rows '81,205' is two cells, not a decimal comma
    studies: list[StudyRow] = field(default_factory=list)

    # An explicit __init__ (init=False), as ``Token``'s: compiled, it is native code.
    def __init__(self, pipe: bool, columns: list[GridColumn], prev_label: Label | None = None,
                 row_unit: str | None = None, line: str = "", continues: bool = False, bars: int = 0,
                 comma: bool = False, studies: list[StudyRow] | None = None) -> None:
        self.pipe = pipe
        self.columns = columns
        self.prev_label = prev_label
        self.row_unit = row_unit
        self.line = line
        self.continues = continues
        self.bars = bars
        self.comma = comma
        self.studies = [] if studies is None else studies

    def add_row(self, line: str, toks: Sequence[Token], cands: list[Candidate], study: bool) -> list[Candidate]:
        """The candidates of a row to keep now; a study row waits for ``finish`` (which row is current?).

        A fixed-width row whose value cells do not fall one per column is shifted: its values are null.
        """
        if not study:
            return cands if self.pipe or self._one_per_column(line) else []
        current, date = self._marker(toks)
        self.studies.append(StudyRow(cands, current, date, self._aligned(line, toks)))
        return []

    def finish(self) -> list[Candidate]:
        """The study rows' values: those of the one current row, or none when that cannot be told.

        Current is the row marked 'Today'/'Current'/'This study', else the latest date; rows marked
        prior, stress or normal range never get here. Any misaligned study row voids the table.
        """
        rows = self.studies
        self.studies = []
        if not rows or not all(r.aligned for r in rows):
            return []
        if len(rows) == 1:
            return rows[0].cands
        marked = [r for r in rows if r.current]
        if len(marked) == 1:
            return marked[0].cands
        dates = [r.date for r in rows if r.date]  # every row's, when all of them have one
        if not marked and len(dates) == len(rows) and len({len(d) for d in dates}) == 1:
            latest = max(dates)
            if dates.count(latest) == 1:
                return rows[dates.index(latest)].cands
        return []

    def _label_tokens(self, toks: Sequence[Token]) -> list[Token]:
        if self.pipe:
            cells = pipe_cells(self.line)
            end = cells[0][1] if cells else 0
        else:
            end = min((c.start for c in self.columns if c.kind in ("value", "feature")), default=0)
        return [t for t in toks if t.end <= end]

    def _marker(self, toks: Sequence[Token]) -> tuple[bool, tuple[int, ...] | None]:
        label = self._label_tokens(toks)
        current = any(t.kind == "word" and t.text in CURRENT_WORDS for t in label)
        dates = [d for d in (_parse_date(t) for t in label if t.kind == "num") if d is not None]
        return current, dates[0] if len(dates) == 1 else None

    def _one_per_column(self, line: str) -> bool:
        """'Mass   -   89.4  g' under 'LV  RV  Unit': '-' and 89.4 both fall under LV, so the row is shifted."""
        taken: set[int] = set()
        for s, e in ws_cells(line):
            text = line[s:e]
            if not (text[0].isdigit() or text in PLACEHOLDERS):
                continue
            col = self._span_column(s, e)
            if col is None:
                if _BARE_VALUE.match(text):
                    return False  # a value under no column
                continue
            if col.index in taken:
                return False
            taken.add(col.index)
        return True

    def _aligned(self, line: str, toks: Sequence[Token]) -> bool:
        """Cells line up with the header: as many '|' marks, or (fixed width) one cell per column."""
        if self.pipe:
            return line.count("|") == self.bars
        wanted = [c for c in self.columns if c.kind != "label"]
        label_end = min(c.start for c in wanted) if wanted else 0
        cells = [(s, e) for s, e in ws_cells(line) if e > label_end]
        if len(cells) != len(wanted):
            return False
        return all(min(e, c.end) > max(s, c.start) for (s, e), c in zip(cells, wanted))

    def absorb_units(self, line: str, toks: Sequence[Token]) -> bool:
        """A row of units only ('Unit  ml  ml  %'): each unit goes to the column it stands in."""
        units = [t for t in toks if t.kind == "unit"]
        if not units or any(t.kind == "num" for t in toks):
            return False
        if any(t.kind == "word" and t.text not in UNIT_WORDS for t in toks):
            return False
        self.line = line
        for t in units:
            col = self._cell_column(t) if self.pipe else self._position_column(t)
            if col is not None and col.kind in ("value", "feature"):
                col.unit = t.unit
        return True

    def accepts(self, line: str, toks: Sequence[Token]) -> bool:
        """Is this line a row of the table (as opposed to the text after it)?"""
        if self.pipe:
            return "|" in line
        has_value = any(t.kind == "num" and t.flag != "junk" for t in toks)
        placeholder = any(line[s:e] in PLACEHOLDERS for s, e in ws_cells(line))
        return (has_value or placeholder) and len(ws_cells(line)) >= 2

    def start_row(self, line: str, toks: Sequence[Token]) -> None:
        """Row unit: a unit cell, or (fixed-width) a unit two or more spaces after its number."""
        self.line = line
        self.row_unit = None
        cells = pipe_cells(line) if self.pipe else ws_cells(line)
        first = self.columns[0] if self.columns else None
        if self.pipe:
            self.continues = bool(cells) and not line[cells[0][0]:cells[0][1]].strip()
        else:  # fixed width: nothing written left of the first value column
            start = min((c.start for c in self.columns if c.kind in ("value", "feature")), default=0)
            self.continues = not line[:max(start - 1, 0)].strip() and first is not None
        for t in toks:
            if t.kind == "unit":
                self.row_unit = t.unit
            elif t.kind == "num" and t.unit and not self.pipe and t.unit_gap >= 2 and t.value2 is None:
                self.row_unit = t.unit
                t.unit = None
                t.unit_end = 0
        if self.row_unit is None and any(c.kind == "unit" for c in self.columns):
            self._unit_cell(line, cells, toks)

    def _unit_cell(self, line: str, cells: Sequence[tuple[int, int]], toks: Sequence[Token]) -> None:
        """The unit column holds '1' (UCUM's dimensionless unit) or a word no spelling knows ('kq')."""
        for index, (s, e) in enumerate(cells):
            if self.pipe:
                col = self.columns[index] if index < len(self.columns) else None
            else:
                col = self._span_column(s, e)
            text = line[s:e].strip()
            if col is None or col.kind != "unit" or not text or text in PLACEHOLDERS:
                continue
            self.row_unit = text
            for t in toks:
                if s <= t.start < e and t.kind == "num":
                    t.flag = "junk"  # '1' is no value

    def column(self, tok: Token) -> GridColumn | None:
        col = self._cell_column(tok) if self.pipe else self._position_column(tok)
        return col if col is not None and col.kind in ("value", "feature") else None

    def _cell_column(self, tok: Token) -> GridColumn | None:
        for i, (s, e) in enumerate(pipe_cells(self.line)):
            if s <= tok.start < e:
                return self.columns[i] if i < len(self.columns) else None
        return None

    def _position_column(self, tok: Token) -> GridColumn | None:
        return self._span_column(tok.start, tok.end)

    def _span_column(self, start: int, end: int) -> GridColumn | None:
        best, best_overlap = None, 0
        for c in self.columns:
            overlap = min(end, c.end) - max(start, c.start)
            if overlap > best_overlap:
                best, best_overlap = c, overlap
        if best is not None:
            return best
        center = (start + end) / 2
        near = min(self.columns, key=lambda c: abs((c.start + c.end) / 2 - center))
        return near if abs((near.start + near.end) / 2 - center) <= 8 else None


def detect_header(line: str, toks: Sequence[Token], items: Sequence[Item], line_offset: int) -> Grid | None:
    """A header names at least two value columns (LV | RV) or a value column beside unit/range."""
    if any(t.kind == "num" and not t.flag for t in toks):
        return None
    pipe = line.count("|") >= 2
    cells = pipe_cells(line) if pipe else ws_cells(line)
    if len(cells) < 2:
        return None
    columns = []
    unread = 0  # columns we cannot read: '| GLS | RV |' (GLS may be the LV column) makes a table all the same
    for i, (s, e) in enumerate(cells):
        cell_items = [it for it in items if it.start >= s and it.end <= e]
        col = _classify(line[s:e], cell_items, i)
        if col is None:
            return None
        if col.kind == "ignore" and (col.unknown or pipe and not any(it.kind == "neg" for it in cell_items)):
            unread += 1
        col.index, col.start, col.end = i, s, e
        col.abs_span = (line_offset + s, line_offset + e) if col.kind == "feature" else None
        columns.append(col)
    kinds = [c.kind for c in columns]
    n_val = kinds.count("feature") + kinds.count("value")
    bars = line.count("|") if pipe else 0
    beside = kinds.count("unit") + kinds.count("ignore")
    if n_val >= 2 or (n_val and unread) or (kinds.count("value") >= 1 and beside >= 1):
        return Grid(pipe=pipe, columns=columns, bars=bars)
    if pipe and kinds[0] == "label" and any(c.kind == "feature" and c.slots.keys() & {"qty", "loc"} for c in columns):
        return Grid(pipe=pipe, columns=columns, bars=bars)  # '| Chamber | EDVi (ml/m2) |'
    return None


def _parse_date(tok: Token) -> tuple[int, ...] | None:
    """'2024-03-02' -> (2024, 3, 2); '02.03.2024' -> (2024, 3, 2); '03/02/2024' (US) -> (2024, 3, 2);
    a bare year -> (2021,). Other orders are ambiguous: None."""
    if tok.flag == "year":
        return (int(tok.text),)
    m = _DATE.match(tok.text)
    if m is None:
        return None
    a, sep, b, c = m.groups()
    if len(a) == 4:
        return int(a), int(b), int(c)
    if len(c) != 4:
        return None
    if sep == ".":
        return int(c), int(b), int(a)
    if sep == "/":
        return int(c), int(a), int(b)
    return None


def _classify(text: str, items: Sequence[Item], index: int) -> GridColumn | None:
    if not text.strip():
        return GridColumn("label" if index == 0 else "empty", index, 0, 0)
    if any(it.kind == "neg" and it.entry is not None and it.entry.neg in IGNORED_NEGS for it in items):
        return GridColumn("ignore", index, 0, 0)
    words = [it.text for it in items if it.kind == "word"]
    terms = [it for it in items if it.kind == "term"]
    units = [it.text for it in items if it.kind == "unit"]
    if terms:
        slots: dict[str, str] = {}
        for t in terms:
            entry = t.entry
            assert entry is not None  # a term item always has its entry
            for slot, part in entry.parts:
                if slots.get(slot, part) != part:
                    return GridColumn("ignore", index, 0, 0)
                slots[slot] = part
        if len(words) > 1:
            return None if index > 0 and len(words) > 3 else GridColumn("label" if index == 0 else "ignore", index, 0, 0)
        return GridColumn("feature", index, 0, 0, slots=slots, unit=units[0] if units else None,
                          unknown=any(it.unknown for it in items))
    if words and all(w in UNIT_WORDS for w in words):
        return GridColumn("unit", index, 0, 0)
    if words and any(w in VALUE_WORDS for w in words):
        return GridColumn("value", index, 0, 0, unit=units[0] if units else None,
                          unknown=any(it.unknown for it in items))
    return GridColumn("label" if index == 0 else "ignore", index, 0, 0, unknown=any(it.unknown for it in items))
