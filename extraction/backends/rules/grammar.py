"""The line grammar: a label (a run of vocabulary phrases) binds the numbers that follow it.

One left-to-right pass over a line's items with a small state: the open label, a queue of labels
for lists ("LVEF and RVEF are 41% and 53%"), a pending negation ("previously", "peak stress"),
and the context (section heading, last side mentioned). The same pass reads measurement lines,
key=value exports, prose sentences and table rows (a row adds its column's parts to each number).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol, Sequence

from extraction.backends.rules.lexicon import ATRIA, VENTRICLES, Entry, Lexicon
from extraction.backends.rules.tokens import Token
from functools import lru_cache

from extraction.normalize import WEAK_UNITS, convert, round_canonical
from extraction.normalize import canonical_unit as _canonical_unit
from schemas.catalog import CATALOG

MERGE_GAP: Final = 3  # filler words allowed inside one label ("RA area in the 4-chamber view")
BIND_GAP: Final = 8  # filler words allowed between a label and its first number
AGAIN_GAP: Final = 3  # ... and between one value and the next value of the same label
NEG_REACH: Final = 2  # a negator reaches a label starting within this many words
# a place term this close after a value no label took is that value's ('... 2 cm at the septum')
ORPHAN_REACH: Final = 3
LIST_WORDS: Final = frozenset({"and", "&", "as", "well"})
LIST_MARKS: Final = frozenset(",/&")
ABBREVIATION_DOTS: Final = frozenset({"th", "approx", "ca", "vs", "dr", "no", "nr", "incl", "max", "avg", "est",
                                      "pt", "mr", "ant", "inf", "lat", "sept", "post", "pre", "diam", "vol", "ht",
                                      "wt", "ref", "e", "g", "i"})
PLAUSIBLE: Final = {f.key: f.plausible for f in CATALOG.fields}
PERCENT: Final = {f.key: f.unit == "%" for f in CATALOG.fields}


@lru_cache(maxsize=1024)
def canonical_unit(unit: str) -> str | None:
    return _canonical_unit(unit)


UNREAD_SIDE: Final = "?"  # a context side named by a word we cannot read: no field has it, so nothing resolves
# A chamber word outside a side phrase ('the XQ ventricle', 'atrial volume'): which side is not said.
CHAMBER_WORDS: Final = {"ventricle": "V", "ventricles": "V", "ventricular": "V", "ventricule": "V", "atrium": "A",
                 "atria": "A", "atrial": "A", "chamber": "VA"}
SIDE_WORDS: Final = frozenset({"left", "right", "lt", "rt", "l", "r"})
CODE_MAX: Final = 4  # an unknown word this short is a code ('BLD', 'IDX'); a longer lower-case one is prose
CODE_JOINTS: Final = ("_", ".")  # 'LV_EDV_X', 'T1.POST.B': a machine identifier, where only vocabulary reads
CODE_WORDS: Final = frozenset({"value", "val", "result", "res", "meas", "measured", "of", "per", "to", "and", "by"})
DEFAULT_SLOTS: Final = ("contrast", "tissue")  # heading slots a label may inherit ("Post-contrast T1" heading)
QUALIFIER_SLOTS: Final = frozenset({"view", "loc", "side", "index"})  # 'RV 130 ml' after 'LVEDV 120 ml'
TRAILING_SLOTS: Final = frozenset({"view", "loc", "phase"})  # '16 cm^2 in the 4-chamber view', '245 ml at end-diastole'
CORRECTION_PRIORITY: Final = 9  # 'Correction: ... the correct value is 85 g' overrides the original report
_WORD_SPECIAL: Final = frozenset(CHAMBER_WORDS) | {"respectively"}  # words ``_word`` does more for than count


@dataclass(slots=True, init=False)
class Item:
    """One word run, phrase, number, unit or mark of a line (created by position: see ``Token``)."""

    kind: str  # 'term' | 'neg' | 'word' | 'mark' | 'num' | 'unit'
    start: int
    end: int
    text: str = ""
    entry: Entry | None = None
    tok: Token | None = None
    unknown: bool = False  # a word we cannot read (no vocabulary, no ordinary prose): it may carry a part

    # An explicit __init__ (init=False), as ``Token``'s: compiled, it is native code.
    def __init__(self, kind: str, start: int, end: int, text: str = "", entry: Entry | None = None,
                 tok: Token | None = None, unknown: bool = False) -> None:
        self.kind = kind
        self.start = start
        self.end = end
        self.text = text
        self.entry = entry
        self.tok = tok
        self.unknown = unknown


def unread_chamber(prev: Item | None, it: Item) -> str | None:
    """'XQ ventricle' or 'right XQ': a chamber named with a word we cannot read ('V', 'A' or 'VA')."""
    if prev is None or prev.kind != "word":
        return None
    if prev.unknown and it.kind == "word" and it.text in CHAMBER_WORDS:
        return CHAMBER_WORDS[it.text]
    if it.unknown and prev.text in SIDE_WORDS:
        return "VA"
    return None


@dataclass(slots=True, init=False)
class Label:
    slots: dict[str, str]
    start: int
    end: int
    sides: list[str] = field(default_factory=list)  # "LV and RV ejection fraction"
    unit: str | None = None  # '[ml]' or '(ms)' inside the label
    closed: bool = False  # a ':' or '=' ended it
    negated: bool = False
    bound: dict[int, list[bool]] = field(default_factory=dict)  # column -> indexed-ness of its values
    abs_span: tuple[int, int] | None = None  # set when the label is on another line (a table row above)
    trailing: bool = False  # its values take their view/location from words after them
    strict: bool = False  # an ambiguous abbreviation ('Mi'): only a value with a fitting unit binds
    own: dict[str, str] | None = None  # set when the quantity was inherited ('RV 130 ml' after 'LVEDV 120 ml')
    unknown: bool = False  # an unreadable token belongs to the label: no part may be defaulted
    column_only: bool = False  # a wide table's column header is the whole label: it must name one field alone

    # An explicit __init__ (init=False), as ``Token``'s: compiled, it is native code.
    def __init__(self, slots: dict[str, str], start: int, end: int, sides: list[str] | None = None,
                 unit: str | None = None, closed: bool = False, negated: bool = False,
                 bound: dict[int, list[bool]] | None = None, abs_span: tuple[int, int] | None = None,
                 trailing: bool = False, strict: bool = False, own: dict[str, str] | None = None,
                 unknown: bool = False, column_only: bool = False) -> None:
        self.slots = slots
        self.start = start
        self.end = end
        self.sides = [] if sides is None else sides
        self.unit = unit
        self.closed = closed
        self.negated = negated
        self.bound = {} if bound is None else bound
        self.abs_span = abs_span
        self.trailing = trailing
        self.strict = strict
        self.own = own
        self.unknown = unknown
        self.column_only = column_only

    @property
    def has_qty(self) -> bool:
        return "qty" in self.slots or self.slots.get("measure") == "WTABBR"

    def fresh(self) -> Label:
        return Label(dict(self.slots), self.start, self.end, list(self.sides), self.unit, self.closed, self.negated,
                     abs_span=self.abs_span, unknown=self.unknown, column_only=self.column_only)


@dataclass(slots=True, init=False)
class Candidate:
    """One value found for a field; the backend votes among candidates of one field."""

    key: str
    value: float
    priority: int  # 3 table row, 2 measurement line (label first on its line), 1 prose
    spans: list[tuple[int, int]]  # offsets in the line: label, value
    original: str
    extra_spans: list[tuple[int, int]] = field(default_factory=list)  # absolute offsets (table header)

    # An explicit __init__ (init=False), as ``Token``'s: compiled, it is native code.
    def __init__(self, key: str, value: float, priority: int, spans: list[tuple[int, int]], original: str,
                 extra_spans: list[tuple[int, int]] | None = None) -> None:
        self.key = key
        self.value = value
        self.priority = priority
        self.spans = spans
        self.original = original
        self.extra_spans = [] if extra_spans is None else extra_spans


@dataclass(init=False)
class Context:
    """What a label without a side means: the section heading and the last side mentioned."""

    head_v: str | None = None
    head_a: str | None = None
    head_neg: str | None = None
    defaults: dict[str, str] = field(default_factory=dict)
    para_v: str | None = None
    para_a: str | None = None
    head_unknown: bool = False  # the heading has a word we cannot read: it may have named a side or contrast
    para_unknown: bool = False  # the paragraph has a word we cannot read: 'The XQ YZ is dilated. EF 30%.'

    # An explicit __init__ (init=False), as ``Token``'s: compiled, it is native code.
    def __init__(self, head_v: str | None = None, head_a: str | None = None, head_neg: str | None = None,
                 defaults: dict[str, str] | None = None, para_v: str | None = None, para_a: str | None = None,
                 head_unknown: bool = False, para_unknown: bool = False) -> None:
        self.head_v = head_v
        self.head_a = head_a
        self.head_neg = head_neg
        self.defaults = {} if defaults is None else defaults
        self.para_v = para_v
        self.para_a = para_a
        self.head_unknown = head_unknown
        self.para_unknown = para_unknown

    def mention(self, side: str) -> None:
        if side in VENTRICLES:
            self.para_v = side
        elif side in ATRIA:
            self.para_a = side

    def mention_unread(self, groups: str) -> None:
        """'The XQ ventricle is dilated': the sentences that follow speak of a chamber we cannot name."""
        if "V" in groups:
            self.para_v = UNREAD_SIDE
        if "A" in groups:
            self.para_a = UNREAD_SIDE

    def vside(self) -> str | None:
        return self.para_v or self.head_v

    def aside(self) -> str | None:
        return self.para_a or self.head_a

    def heading(self, slot_sets: list[dict[str, str]], neg: str | None, unknown: bool = False) -> None:
        sides = [s["side"] for s in slot_sets if "side" in s]
        self.head_unknown = unknown
        self.head_v = next((s for s in sides if s in VENTRICLES), None)
        self.head_a = next((s for s in sides if s in ATRIA), None)
        self.head_neg = neg
        self.defaults = {}
        for s in slot_sets if not unknown else ():  # 'XQ blood T1': XQ may undo what 'blood' says
            for slot in DEFAULT_SLOTS:
                if slot in s:
                    self.defaults[slot] = s[slot]
            if s.get("qty") == "T1":
                self.defaults["qty"] = "T1"
        self.paragraph()

    def paragraph(self) -> None:
        self.para_v = self.para_a = None
        self.para_unknown = False


class Column(Protocol):
    kind: str  # 'value' | 'feature' (others are never asked for)
    index: int
    slots: dict[str, str]
    unit: str | None
    abs_span: tuple[int, int] | None
    unknown: bool  # its header has a word we cannot read


class Row(Protocol):
    """A table row: where each number sits, the row's unit cell, the label of the row above."""

    row_unit: str | None
    prev_label: Label | None
    continues: bool  # the row's label cell is empty: it continues the row above

    def column(self, tok: Token) -> Column | None: ...


# A value waiting for a trailing view/location: (label, column, value, token, unit).
Awaiting = tuple[Label, "Column | None", float, Token, "str | None"]


def _flush(run: list[tuple[str, int, int, bool, bool, str, bool]], words: list[str], items: list[Item],
           toks: list[Token], lex: Lexicon) -> None:
    """The words collected so far become items: the longest vocabulary phrases first. A module
    function, not a closure: compiled (mypyc), a closure and its environment point at each other,
    so every line's tokens and items became cyclic garbage (90% of the objects the collector
    walked, ~1 ms a report)."""
    entries, longest, known, heads = lex.entries, lex.longest, lex.known, lex.heads
    unit_item = None
    if len(run) > 1 and run[-1][3]:
        for k in range(min(4, len(run) - 1), 0, -1):
            tail = run[-k:]
            if all(r[3] for r in tail) and tuple(words[-k - 1:]) not in entries:
                spelled = "/".join(words[-k:])
                if canonical_unit(spelled) is not None:
                    unit_item = Item("unit", tail[0][1], tail[-1][2], spelled)
                    del run[-k:]
                    del words[-k:]
                    break
    i, size = 0, len(run)
    while i < size:
        word, start, stop, _, title, joint, _ = run[i]
        n = longest.get(word, 0)  # most words start no phrase: 0
        if n > size - i:
            n = size - i
        if n > 1 and (word, words[i + 1]) not in heads:
            n = 1  # no phrase starts with these two words
        entry = None
        while n:  # the longest phrase first
            key = (word,) if n == 1 else tuple(words[i:i + n])
            entry = entries.get(key)
            if entry is not None and entry.abbr and n == 1 and title:
                entry = None  # 'Dr Ravi O'Sullivan' is no right atrial volume index
            if entry is not None:
                break
            n -= 1
        if entry is not None:
            items.append(Item("neg" if entry.neg else "term", start, run[i + n - 1][2],
                              word if n == 1 else " ".join(key), entry))
            i += n
        else:
            after = run[i + 1][5] if i + 1 < size else ""
            if word == "/":
                items.append(Item("mark", start, stop, word))
            elif word not in known or joint in CODE_JOINTS or after in CODE_JOINTS or (
                    len(word) == 1 and (joint or after)):
                items.append(Item("word", start, stop, word, None, None, _unknown(lex, run, i, joint, after, toks)))
            else:
                items.append(Item("word", start, stop, word))
            i += 1
    run.clear()
    words.clear()
    if unit_item is not None:
        items.append(unit_item)


def lexicalize(toks: list[Token], lex: Lexicon) -> list[Item]:
    """Group words into the longest vocabulary phrases; '-' and '_' join words, '/' may too.

    An identifier that ends in a unit ('weight_lb', 'lvci_l_min_m2', 't1n_s') gives the label
    its unit, as '[lb]' would.
    """
    items: list[Item] = []
    # word, start, end, tied by '_', Title-case, the joint before it ('-', '_', '.' or ''), in capitals
    run: list[tuple[str, int, int, bool, bool, str, bool]] = []
    words: list[str] = []  # run[i][0]: phrase keys are slices of it
    vocab, corrected = lex.vocab, lex.corrected

    last_word = False
    tie, glue = False, ""
    for j, t in enumerate(toks):
        kind = t.kind
        if kind == "word":
            word = t.text
            if t.flag != "view" and word not in vocab and len(word) >= 4:
                fixed = corrected.get(word)  # the common case, without a call
                word = fixed if fixed is not None else lex.correct(word, run[-1][0] if run else "")
            if word == "chamber" and not run:
                view = _view_number(items)
                if view is not None:  # '(4-camber)'
                    word = view
            run.append((word, t.start, t.end, tie and t.spaces == 0, t.title, glue if t.spaces == 0 else "", t.caps))
            words.append(word)
            last_word, tie, glue = True, False, ""
            continue
        if kind == "mark" and run and last_word:
            text = t.text
            if text in "-_" and t.spaces <= 1:
                tie = text == "_" and t.spaces == 0
                glue = text if t.spaces == 0 else ""
                continue  # 'end-diastolic', 'lv_edv': keep the run going
            nxt = toks[j + 1] if j + 1 < len(toks) else None
            if text == "." and t.spaces == 0 and nxt is not None and nxt.kind == "word" and nxt.spaces == 0:
                tie, glue = False, "."
                continue  # 'lv.edv', 't1n.blood': an identifier
            if text == "/" and nxt is not None and nxt.kind == "word":
                run.append(("/", t.start, t.end, False, False, "", False))
                words.append("/")
                last_word = tie = False
                glue = ""
                continue
        tie, glue = False, ""
        if run:
            _flush(run, words, items, toks, lex)
        last_word = False
        if kind == "num":
            items.append(Item("num", t.start, max(t.end, t.end2, t.unit_end), t.text, None, t))  # t.value_end
        elif kind == "unit":
            items.append(Item("unit", t.start, t.end, t.unit or "", None, t))
        else:
            items.append(Item("mark", t.start, t.end, t.text, None, t))
    if run:
        _flush(run, words, items, toks, lex)
    return items


def _unknown(lex: Lexicon, run: list, i: int, joint: str, after: str, toks: list[Token]) -> bool:
    """Can this word of a label run not be read (so it may carry the part a default would supply)?

    A word no list knows is a code when short or in capitals among lower case ('BLD', 'XQ'); a longer
    lower-case one ('improved', 'sacubitril') is prose. Inside a machine identifier ('T1.POST.VS',
    'LV_EDV_X') only vocabulary and units read, not English; a single letter there ('T1.N.B') is a code.
    """
    word = run[i][0]
    coded = joint in CODE_JOINTS or after in CODE_JOINTS
    if lex.unknown(word):
        capitals = run[i][6] and any(t.kind == "word" and not t.caps for t in toks)  # 'BLD' among lower case
        return len(word) <= CODE_MAX or capitals or coded
    if len(word) == 1:
        return word not in ("i", "a") and any(len(r[0]) > 1 for r in run[max(0, i - 1):i + 2] if r is not run[i])
    return coded and word not in lex.vocab and word not in CODE_WORDS and canonical_unit(word) is None


def _view_number(items: list[Item]) -> str | None:
    """A misspelt '4-chamber': the number before is the view, not a value; pops it from items."""
    k = len(items) - 1
    if k >= 0 and items[k].kind == "mark" and items[k].text == "-":
        k -= 1
    if k >= 0 and items[k].kind == "num" and items[k].text in ("2", "3", "4"):
        tok = items[k].tok
        assert tok is not None  # a number item always has its token
        if tok.unit:
            return None
        view = items[k].text + "ch"
        del items[k:]
        return view
    return None


def _is_boundary(item: Item, prev: Item | None, line: str) -> bool:
    """Sentence or clause end: ';', or '.' then a space (not 'approx. 44', 'th. anteroseptal')."""
    if item.text == ";":
        return True
    if item.text != ".":
        return False
    if prev is not None and prev.kind == "word" and prev.end == item.start and prev.text in ABBREVIATION_DOTS:
        return False
    rest = line[item.end:item.end + 3]
    if rest == "":
        return True
    if rest[0] != " ":
        return False
    nxt = rest.strip()[:1]
    return not nxt.isdigit()


class LineParser:
    """Binds numbers to labels in one line and returns the candidates."""

    def __init__(self, lex: Lexicon) -> None:
        self.lex = lex

    def parse(self, items: Sequence[Item], line: str, ctx: Context, row: Row | None = None,
              line_neg: str | None = None, content_start: int = 0) -> list[Candidate]:
        self.line, self.ctx, self.row, self.line_neg = line, ctx, row, line_neg
        self.content_start = content_start
        self.first_label: Label | None = None
        self.continued = False  # a table row without a label of its own (continues the row above)
        self.row_label: Label | None = None  # the label a table row's values take (its own, above, or none)
        self.correction = False  # the line corrects a value ('Correction: ... the correct value is 85 g')
        self.row_neg = False
        self.out: list[Candidate] = []
        self._reset()
        self.last_view: str | None = None
        self.last_col: Column | None = None
        self.last_num_item = -10
        prev: Item | None = None
        # Words and marks, most of the items, are handled inline (a method call each cost more
        # than the work); see ``_word`` and ``_mark`` for what they do.
        for idx, it in enumerate(items):
            kind = it.kind
            self.idx = idx
            if kind == "mark":
                t = it.text
                if (t == "." or t == ";") and _is_boundary(it, prev, line) and not (self.correction and t == ";"):
                    self._retract_if_pending()
                    self._reset()
                else:  # _mark
                    if t == ",":
                        self.unk_pending = False
                    if t == ":" or t == "=":
                        if self.label is not None:
                            self.label.closed = True
                        self.joiner_only = False
                    elif t not in LIST_MARKS and t != "|":
                        if not (t in "()[]" and self.label is not None and not self.label.bound):
                            self.joiner_only = False
            elif kind == "word":
                if prev is not None and prev.kind == "word" and (prev.unknown or it.unknown):
                    groups = unread_chamber(prev, it)
                    if groups:
                        ctx.mention_unread(groups)
                if it.unknown or it.text in _WORD_SPECIAL:
                    self._word(it)
                else:  # a word that is no chamber, no 'respectively' and readable
                    self._count_word(it.text)
            elif kind == "term":
                self._term(it)
            elif kind == "num":
                self._num(it, idx, items)
            elif kind == "neg":
                self._neg(it)
            elif kind == "unit":
                if self.row is None and self.label is not None and not self.label.bound:
                    self.label.unit = it.text
            prev = it
        self._retract_if_pending()
        return self.out

    # -- state ------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.label: Label | None = None
        self.queue: list[Label] = []
        self.list_vals: list[tuple[Token, float]] = []  # values (and their tokens) waiting for the labels of a list
        self.joiner_only = True
        self.gap = 0
        self.pending: str | None = None
        self.pending_age = 0
        self.block = 0  # words left during which the next number is dropped
        self.retract: list[Candidate] | None = None
        self.last_emitted: list[Candidate] = []
        self.post_window = 0
        self.awaiting: Awaiting | None = None  # a value waiting for a trailing view/location
        self.label_emits: list[Candidate] = []
        self.last_bound: Label | None = None
        self.unk_pending = False  # an unreadable word since the last value or clause: the next label owns it
        self.orphan_age: int | None = None  # words since a value no label took ('XQ is 2.0 cm at the septum')
        self.sent_unknown = False  # an unreadable word in this sentence outside any label

    def _retract_if_pending(self) -> None:
        if self.retract:
            self.out = [c for c in self.out if all(c is not r for r in self.retract)]
        self.retract = None

    # -- items ------------------------------------------------------------------------------
    def _term(self, it: Item) -> None:
        self._retract_if_pending()
        self.post_window = 0
        self.block = 0  # 'normal in size, end-diastolic volume 159 cc': the range word spoke of no number
        entry = it.entry
        assert entry is not None  # a term item always has its entry
        slots = dict(entry.parts)
        if self.awaiting is not None and self._complete(slots):
            return
        if self.orphan_age is not None and self.orphan_age <= ORPHAN_REACH and set(slots) <= TRAILING_SLOTS:
            self.orphan_age = None  # the place belongs to the value before it, it labels no value after it
            return
        self.awaiting = None
        lab = self.label
        side = slots.get("side")
        pair: list[str] = []
        if side is not None and "+" in side:  # 'left and right ventricular'
            pair = side.split("+")
            del slots["side"]
            side = None
            for s in pair:
                self.ctx.mention(s)
        if side is not None:
            self.ctx.mention(side)
        if lab is not None and lab.own is not None and not lab.bound and "qty" in slots and self.gap <= MERGE_GAP:
            lab.slots, lab.own = {**lab.own, **slots}, None  # 'LV anteroseptal WT': the side came first
            lab.end, self.gap = it.end, 0
            return
        if lab is not None and not lab.bound and not lab.closed and self.gap <= MERGE_GAP and not pair:
            if side is not None and not lab.has_qty and set(lab.slots) == {"side"} and self.joiner_only \
                    and lab.slots["side"] != side and (side in VENTRICLES) == (lab.slots["side"] in VENTRICLES):
                lab.sides = (lab.sides or [lab.slots["side"]]) + [side]  # 'LV and RV EDV', 'LV/RV EDV'
                lab.slots.update({k: v for k, v in slots.items() if k != "side"})
                lab.end, self.gap = it.end, 0
                return
            if all(lab.slots.get(k, v) == v for k, v in slots.items()) and not (lab.sides and side):
                lab.slots.update(slots)
                lab.end, self.gap = it.end, 0
                if "view" in slots:
                    self.last_view = slots["view"]
                return
        if lab is not None and not lab.bound and lab.has_qty and self.joiner_only and not lab.negated \
                and ("qty" in slots) and self.gap <= MERGE_GAP and not lab.strict and not entry.strict:
            self.queue.append(lab)
        else:
            self.queue = []
            self.list_vals = []
        new = Label(slots, it.start, it.end, sides=pair, strict=entry.strict, unknown=self.unk_pending)
        self.label_emits = []
        prev = self.last_bound
        if prev is None and lab is not None and lab.closed and not lab.bound and lab.has_qty:
            prev = lab  # 'EF: LV 55%, RV 45%'
            self.last_bound = lab
        if prev is not None and set(slots) <= QUALIFIER_SLOTS and prev.has_qty:
            new.slots, new.own = {**prev.slots, **slots}, slots
            new.trailing = prev.trailing
            new.unknown = new.unknown or prev.unknown
        if self.pending and self.pending_age <= NEG_REACH:
            new.negated = True
        if "view" not in slots and slots.get("qty") in ("AREA", "LENGTH") and self.last_view:
            new.slots["view"] = self.last_view
        if "view" in slots:
            self.last_view = slots["view"]
        self.label, self.gap, self.joiner_only = new, 0, True
        self.pending = None
        self.block = 0
        if self.first_label is None:
            self.first_label = new

    def _neg(self, it: Item) -> None:
        entry = it.entry
        assert entry is not None  # a negator item always has its entry
        kind = entry.neg
        if self.row is not None and self.first_label is None and kind in ("prior", "stress", "ref"):
            self.row_neg = True  # the row's own label says 'prior', 'stress' or 'normal range'
            return
        if kind == "ref":
            self.block = 3
            return
        if kind == "correction":
            self.correction = True
            self.block = 0  # 'the correct value is 85 g' speaks of the number that follows
            return
        if kind == "prior" and self.correction:
            self.block = 3  # 'was transcribed as 68 g': drop that number, keep the label
            return
        if kind == "prior" and self.post_window > 0 and self.last_emitted:
            self.retract = list(self.last_emitted)
        if self.label is not None and not self.label.bound:
            self.label.negated = True
        self.pending, self.pending_age = kind, 0
        self.block = 3
        self.joiner_only = False

    def _word(self, it: Item) -> None:
        if it.text in CHAMBER_WORDS and self.row is None:
            self.unk_pending = True  # 'the XQ atrial volume': a chamber whose side no word names
            if self.label is not None and not self.label.bound:
                self.label.unknown = True
        if it.unknown:
            self._unreadable()
        lab = self.label
        if it.text == "respectively" and self.label_emits and (lab is None or not (self.queue or lab.sides)):
            bad = self.label_emits  # one label, several values 'respectively': which is which is unknown
            self.out = [c for c in self.out if all(c is not b for b in bad)]
            self.label_emits = []
        self._count_word(it.text)

    def _count_word(self, text: str) -> None:
        """One more plain word: the distances and windows that count words move on."""
        self.gap += 1
        if self.orphan_age is not None:
            self.orphan_age += 1
        if text not in LIST_WORDS:
            self.joiner_only = False
        self.pending_age += 1
        if self.block:
            self.block -= 1
        if self.post_window:
            self.post_window -= 1

    def _unreadable(self) -> None:
        """A word we cannot read: the label it is in, or the next one, gets no defaults; after a value
        it may say what that value is ('1.3 cm XQ') or what the next one is ('150 ml, XQ 70 ml/m2')."""
        self.unk_pending = True
        self.ctx.para_unknown = True
        lab = self.label
        if self.row is None and (lab is None or lab.bound):
            self.sent_unknown = True
        if lab is not None and not lab.bound:
            lab.unknown = True
        elif lab is not None and self.row is None:
            self.label = self.last_bound = None
            self.queue = []
        if self.last_num_item == self.idx - 1 and self.last_emitted and self.row is None:
            old = self.last_emitted
            self.out = [c for c in self.out if all(c is not o for o in old)]
            self.last_emitted = []

    def _mark(self, it: Item) -> None:
        t = it.text
        if t == ",":
            self.unk_pending = False
        if t in ":=":
            if self.label is not None:
                self.label.closed = True
            self.joiner_only = False
        elif t not in LIST_MARKS and t != "|":
            if t in "()[]" and self.label is not None and not self.label.bound:
                return
            self.joiner_only = False

    # -- numbers ----------------------------------------------------------------------------
    def _num(self, it: Item, idx: int, items: Sequence[Item]) -> None:
        tok = it.tok
        assert tok is not None  # a number item always has its token
        self._number(tok, idx, items)
        self.unk_pending = False
        unread = self.row is None and not tok.flag and not self.last_emitted and self.awaiting is None
        self.orphan_age = 0 if unread else None
        if unread and self.sent_unknown and tok.unit:
            self.ctx.mention_unread("VA")  # 'The XQ YZ is dilated, with an AB-CD EF of 301 ml': about what?

    def _number(self, tok: Token, idx: int, items: Sequence[Item]) -> None:
        if tok.flag:
            if tok.flag == "range":
                self.block = 0
            elif tok.flag == "year" and self.post_window > 0 and self.last_emitted and idx > 0 \
                    and items[idx - 1].kind == "word" and items[idx - 1].text in ("in", "on", "from", "since", "of"):
                old = self.last_emitted  # 'LVEF was 45% in 2019': an old value; the label stays open
                self.out = [c for c in self.out if all(c is not o for o in old)]
                self.last_emitted, self.post_window = [], 0
                if self.label is not None:
                    self.label.bound.clear()
            return
        self.retract = None  # a negator followed by a number speaks of that number
        self.awaiting = None
        self.post_window = 0
        self.last_emitted = []
        if self.block:
            self.block = 0
            self.pending = None
            return
        col = None
        row = self.row
        if row is not None:
            col = self._column(row, tok, idx, items)
            if col is None:
                return
            if self.label is None and self.first_label is None:
                if self.row_neg:
                    return  # a 'Prior' or 'Normal range' row
                above = row.prev_label
                if above is not None and row.continues:
                    cont = above.fresh()
                    cont.unknown = cont.unknown or self.unk_pending
                    self.label = cont
                    self.continued = True
                    self.row_label = cont
                else:  # the column header names the field: '| LVEDV (ml) | LVEF (%) |' over '| 150 | 60 |'
                    own = Label({}, tok.start, tok.start, unknown=self.unk_pending, column_only=True)
                    self.label = own
                    self.first_label = self.row_label = own
        lab = self.label
        self.last_num_item = idx
        if lab is None:
            return
        if lab.negated or ((self.line_neg or self.ctx.head_neg) and lab.slots.get("state") != "REST"):
            lab.bound.setdefault(-1, [])
            return
        limit = AGAIN_GAP if lab.bound else BIND_GAP
        if self.gap > limit:
            return
        self.gap = 0
        value = tok.value
        assert value is not None  # a number without a value is flagged 'junk' (returned above)
        if self.queue or lab.sides:
            self._list_value(lab, tok, value)
            return
        value2 = tok.value2
        if value2 is not None:
            q = lab.slots.get("qty")
            if q == "BP" and not lab.bound:
                lab.bound[0] = [False]
                s1 = self._emit(lab, col, value, tok, "SBP")
                s2 = self._emit(lab, col, value2, tok, "DBP")
                self.last_emitted = s1 + s2
                self.post_window = 3
            return
        self.last_emitted = self._bind(lab, col, value, tok)
        self.post_window = 3 if self.last_emitted else 0

    def _column(self, row: Row, tok: Token, idx: int, items: Sequence[Item]) -> Column | None:
        """A number in a table: its column; a '(101 mL/m2)' after a value shares its column."""
        between = items[self.last_num_item + 1:idx] if self.last_num_item >= 0 else None
        col: Column | None
        if between is not None and self.last_col is not None and all(b.kind == "mark" and b.text in "(/," for b in between) \
                and between:
            col = self.last_col
        else:
            col = row.column(tok)
        self.last_col = col
        return col

    def _list_value(self, label: Label, tok: Token, value: float) -> None:
        """Values of 'LVEF and RVEF are 41% and 53%' / 'LVEF/RVEF 20/45 %' go to the labels in order.

        ``label`` is the open label (``self.label``), ``value`` the token's value.
        """
        targets: list[Label] = []
        for lab in self.queue + [label]:
            if lab.sides:
                for s in lab.sides:
                    t = lab.fresh()
                    t.sides, t.slots["side"] = [], s
                    targets.append(t)
            else:
                targets.append(lab)
        self.list_vals.append((tok, value))
        if tok.value2 is not None:
            self.list_vals.append((tok, tok.value2))
        if len(self.list_vals) < len(targets):
            return
        if len(self.list_vals) == len(targets):
            unit = next((vt.unit for vt, _ in reversed(self.list_vals) if vt.unit), None)
            for target, (vt, v) in zip(targets, self.list_vals):
                self._emit(target, None, v, vt, None, unit_override=vt.unit or unit)
        self.queue, self.list_vals = [], []
        label.bound[0] = [False]
        self.label_emits = []

    def _bind(self, lab: Label, col: Column | None, value: float, tok: Token) -> list[Candidate]:
        unit = tok.unit or lab.unit or (self.row.row_unit if self.row else None) or (col.unit if col else None)
        cu = canonical_unit(unit) if unit else None
        indexed = cu in ("mL/m^2", "g/m^2", "L/min/m^2")
        cid = col.index if col is not None else 0
        seen = lab.bound.get(cid)
        if seen is not None and not lab.trailing and (unit is None or indexed in seen):
            return []
        lab.bound.setdefault(cid, []).append(indexed)
        cands = self._emit(lab, col, value, tok, None, unit_override=unit)
        if cands:
            self.last_bound = lab
        elif self._completable(lab.slots):
            self.awaiting = (lab, col, value, tok, unit)
            lab.bound[cid].pop()
        return cands

    @staticmethod
    def _completable(slots: dict[str, str]) -> bool:
        """Could a trailing view/location still name the field? ('LA area 16 cm^2 in the 4CH view')"""
        if slots.get("qty") in ("AREA", "LENGTH"):
            return "view" not in slots
        if "qty" not in slots and slots.get("side") in VENTRICLES and "phase" not in slots:
            return True  # 'a dilated LV measuring 245 ml at end-diastole'
        return "qty" not in slots and slots.get("measure") in ("WT", "WTABBR") and "loc" not in slots

    def _complete(self, slots: dict[str, str]) -> bool:
        """A view/location term right after a waiting value completes it."""
        if not (set(slots) <= TRAILING_SLOTS or (set(slots) == {"qty"} and slots["qty"] in ("AWT", "IWT"))):
            return False
        awaiting = self.awaiting
        assert awaiting is not None  # only asked while a value waits
        lab, col, value, tok, unit = awaiting
        trial = Label({**lab.slots, **slots}, lab.start, lab.end, abs_span=lab.abs_span, unknown=lab.unknown)
        self.awaiting = None
        if self._emit(trial, col, value, tok, None, unit_override=unit):
            lab.trailing = True
            lab.bound.setdefault(-2, [])
            self.last_bound = lab
            return True
        return lab.unknown  # 'wall XQ 2.4 cm at the anteroseptum': the place was the value's, it labels no other

    def _emit(self, lab: Label, col: Column | None, value: float, tok: Token, key: str | None,
              unit_override: str | None = None) -> list[Candidate]:
        unit = unit_override if unit_override is not None else tok.unit
        slots = dict(col.slots) if col is not None else {}
        slots.update(lab.slots)
        defaults = self.ctx.defaults
        if defaults:
            if "qty" not in slots and defaults.get("qty") == "T1" and ({"contrast", "tissue"} & slots.keys()):
                slots["qty"] = "T1"
            if slots.get("qty") == "T1":
                for slot in DEFAULT_SLOTS:
                    if slot in defaults:
                        slots.setdefault(slot, defaults[slot])
        if lab.strict and not unit:
            return []
        if self.sent_unknown and "side" not in slots and self.row is None:
            self.ctx.mention_unread("VA")  # 'The XQ YZ is dilated, with an EDV of ...': whose EDV is unknown
            self.sent_unknown = False
        guarded = lab.unknown or (col is not None and col.unknown)
        t1_default = not (lab.column_only or self.ctx.head_unknown)
        side_default = t1_default and not self.ctx.para_unknown
        ctx = self.ctx
        vside, aside = (None, None) if lab.column_only or guarded else (ctx.para_v or ctx.head_v, ctx.para_a or ctx.head_a)
        for try_unit in (unit, None) if unit and unit.lower() in WEAK_UNITS else (unit,):
            cu = canonical_unit(try_unit) if try_unit else None
            k = key or self.lex.resolve(slots, cu, vside, aside, guarded, side_default, t1_default)
            if k is None:
                continue
            v = convert(value, try_unit, k)
            if v is None:
                continue
            lo, hi = PLAUSIBLE[k]
            if v < lo and 0 < value < 1 and PERCENT.get(k) and lo <= value * 100 <= hi:
                v = value * 100  # '0.29' under a '%' heading: a fraction, as a bare 0.29 would be
            if not lo <= v <= hi:
                continue
            if lab.start >= self.content_start - 1 and lab.start <= self.content_start + 1:
                priority = 2
            else:
                priority = 1
            if self.row is not None:
                priority = 3
            if self.correction:
                priority = CORRECTION_PRIORITY
            value_end = max(tok.end, tok.end2, tok.unit_end)  # tok.value_end, without the property call
            number = self.line[tok.start:value_end]
            original = number if (tok.unit or not try_unit) else f"{number} {try_unit}"
            spans = [(tok.start, value_end)] if lab.abs_span else [(lab.start, lab.end), (tok.start, value_end)]
            extra = [lab.abs_span] if lab.abs_span else []
            if col is not None and col.abs_span:
                extra.append(col.abs_span)
            cand = Candidate(k, round_canonical(v), priority, spans, original, extra)
            self.out.append(cand)
            self.label_emits.append(cand)
            return [cand]
        return []
