"""Label vocabulary compiled from the catalog: phrases -> parts, negators, and part sets -> fields.

A label is read as parts in slots (side LV, quantity EDV, INDEX, view 2CH, ...), never as one
fixed string per template, so "LV EDV / BSA", "left ventricular end-diastolic volume indexed"
and "EDVi" under a "Left Ventricle" heading all reach LVEDVI through the same lookup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from extraction.backends.rules.words import WORDS
from extraction.normalize import UNIT_SPELLINGS
from schemas.catalog import CATALOG, Catalog

VENTRICLES: Final = ("LV", "RV")
ATRIA: Final = ("LA", "RA")
INDEXED_UNITS: Final = frozenset({"mL/m^2", "g/m^2", "L/min/m^2"})
ABSOLUTE_UNITS: Final = frozenset({"mL", "g", "L/min"})
_FUZZY_CACHE_MAX: Final = 20_000
# Grammar words worth correcting too ('respectivly'); common words never corrected ('well' is no 'wall').
GRAMMAR_WORDS: Final = frozenset({"respectively"})
COMMON_WORDS: Final = frozenset("""well will with were when then than this that also rest test last less lift mask here
there these those late mild male mean main made make more most must much felt fell full fill pause false value valve
later inter enter water after under other order older total trial mitral apex apical basal basis bass rates dated
mass area wall left right index blood pulse rate heart aorta sinus size sign site side slice lead leads need near
area areas ratio ratios heavy even ever over dear deal lean leak lest vein view views area""".split())


def _one_edit(a: str, b: str) -> bool:
    """True when a and b differ by exactly one insertion, deletion, substitution or adjacent swap."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1:]


@dataclass(frozen=True, slots=True)
class Entry:
    """What a phrase means: parts as (slot, part) pairs, or a negator kind."""

    parts: tuple[tuple[str, str], ...] = ()
    neg: str | None = None
    strict: bool = False  # ambiguous short abbreviation ('mi'): binds only a value with a unit
    abbr: bool = False  # a made-up compound ('ravi', 'lavi'): 'Ravi' written as a name is no label


def phrase_key(phrase: str) -> tuple[str, ...]:
    """'LV EDV/BSA' -> ('lv', 'edv', '/', 'bsa'); '2-chamber' -> ('2ch',)."""
    p = phrase.lower()
    p = re.sub(r"\b([234])\s*-?\s*(?:chamber|ch)\b", r"\1ch", p)
    p = re.sub(r"[-_.()'\[\],:]", " ", p)
    p = p.replace("/", " / ")
    return tuple(p.split())


class Lexicon:
    """Phrase table, fuzzy word correction and the field lookup, all from one catalog."""

    def __init__(self, catalog: Catalog = CATALOG) -> None:
        vocab = catalog.rules
        self.slot_of: dict[str, str] = {}
        self.entries: dict[tuple[str, ...], Entry] = {}
        for slot, parts in vocab.parts.items():
            for part, phrases in parts.items():
                self.slot_of[part] = slot
                for phrase in phrases:
                    self._add(phrase_key(phrase), Entry(((slot, part),)))
        for kind, phrases in vocab.negators.items():
            for phrase in phrases:
                self.entries.setdefault(phrase_key(phrase), Entry(neg=kind))
        # fields: parts as a slot -> part mapping
        self.fields: list[tuple[str, dict[str, str]]] = []
        for f in catalog.fields:
            slots = {self.slot_of[p]: p for p in f.parts}
            self.fields.append((f.key, slots))
        self.by_qty: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for key, slots in self.fields:
            self.by_qty.setdefault(slots["qty"], []).append((key, slots))
        self._add_compounds(vocab.abbreviations, vocab.index_abbreviations)
        self._add_synonyms(catalog)
        for key, slots in self.fields:  # coded exports name fields by catalog key: 'PRET1M;1009;ms'
            self._add((key.lower(),), Entry(tuple(sorted(slots.items())), abbr=True))
        self.max_len = max(len(k) for k in self.entries)
        self.longest: dict[str, int] = {}  # first word -> longest phrase starting with it
        for k in self.entries:
            self.longest[k[0]] = max(self.longest.get(k[0], 0), len(k))
        self.heads = frozenset(k[:2] for k in self.entries if len(k) > 1)  # first two words of the longer phrases
        self._build_fuzzy()

    # -- building ---------------------------------------------------------------------------
    def _add(self, key: tuple[str, ...], entry: Entry) -> None:
        if key and key not in self.entries:
            self.entries[key] = entry

    def _has_field(self, parts: dict[str, str]) -> bool:
        return any(slots == parts for _, slots in self.fields)

    def _add_compounds(self, abbreviations: dict, index_abbreviations: dict) -> None:
        """'lv' + 'edv' -> 'lvedv' and 'lv edv'; 'lv' + 'edvi' -> 'lvedvi'; 'la' + 'a4c' -> 'laa4c'.

        Only combinations that name a catalog field are kept; bare index abbreviations need three
        letters ('edvi' yes, 'mi' no: that is a myocardial infarction).
        """
        side_abbr = {side: [k[0] for k, e in self.entries.items()
                            if len(k) == 1 and len(k[0]) == 2 and e.parts == (("side", side),)]
                     for side in VENTRICLES + ATRIA}
        views = {part: [k[0] for k, e in self.entries.items() if len(k) == 1 and e.parts == (("view", part),)]
                 for part, slot in self.slot_of.items() if slot == "view"}
        for part, toks in views.items():
            toks += [t[:-1] for t in toks if t[0].isdigit() and t.endswith("ch")]  # '2ch' -> '2c'
        forms: list[tuple[str, dict[str, str]]] = []  # (abbreviation, parts without side)
        for qty, abbrs in abbreviations.items():
            forms += [(a, {"qty": qty}) for a in abbrs]
            for part, toks in views.items():
                forms += [(a + v, {"qty": qty, "view": part}) for a in abbrs for v in toks]
        for qty, abbrs in index_abbreviations.items():
            forms += [(a, {"qty": qty, "index": "INDEX"}) for a in abbrs]
        for abbr, parts in forms:
            if len(parts) > 1 and any(set(parts.items()) <= set(s.items()) for _, s in self.fields):
                self._add((abbr,), Entry(tuple(sorted(parts.items())), strict=len(abbr) < 3, abbr=True))
            for side, sides in side_abbr.items():
                full = {"side": side, **parts}
                if self._has_field(full):
                    entry = Entry(tuple(sorted(full.items())), abbr=True)
                    for sa in sides:
                        self._add((sa + abbr,), entry)
                        self._add((sa, abbr), entry)

    def _add_synonyms(self, catalog: Catalog) -> None:
        """A field synonym the phrase table cannot already read becomes a phrase of its own."""
        owners: dict[tuple[str, ...], list[dict[str, str]]] = {}
        for f, (_, slots) in zip(catalog.fields, self.fields):
            for syn in f.synonyms:
                owners.setdefault(phrase_key(syn), []).append(slots)
        for key, slot_list in owners.items():
            if key in self.entries or self._covered(key):
                continue
            shared = set(slot_list[0].items())
            for slots in slot_list[1:]:
                shared &= set(slots.items())
            shared.discard(("tissue", "MYO"))  # the default: 't1n' is native T1, 't1n blood' its blood pool
            if any(slot == "qty" for slot, _ in shared):
                self._add(key, Entry(tuple(sorted(shared))))

    def _covered(self, key: tuple[str, ...]) -> bool:
        i = 0
        while i < len(key):
            for n in range(min(len(key) - i, 6), 0, -1):
                if key[i:i + n] in self.entries:
                    i += n
                    break
            else:
                return False
        return True

    def _build_fuzzy(self) -> None:
        # only real words are typo targets, never made-up compounds ('LeVI' is no 'lavi')
        words = {w for k, e in self.entries.items() if not e.abbr for w in k if w.isalpha() and len(w) >= 5}
        words |= GRAMMAR_WORDS
        self.vocab = words | {w for k in self.entries for w in k}
        self._deletes: dict[str, set[str]] = {}
        for w in words:
            for d in {w} | {w[:i] + w[i + 1:] for i in range(len(w))}:
                self._deletes.setdefault(d, set()).add(w)
        self._fuzzy_cache: dict[tuple[str, str], str] = {}
        # word -> its correction where the word before cannot change it (all but a few typos)
        self.corrected: dict[str, str] = {}
        self._resolved: dict[tuple, str | None] = {}
        phrases = list(self.entries) + [phrase_key(p) for f in CATALOG.fields for p in f.synonyms]
        self._bigrams = {(k[i], k[i + 1]) for k in phrases for i in range(len(k) - 1)}
        category_words = {w for rule in CATALOG.rules.categories for p in rule.phrases for w in phrase_key(p)}
        self.known = frozenset(self.vocab | WORDS | category_words | set(UNIT_SPELLINGS) | GRAMMAR_WORDS)
        self._known_deletes: dict[str, set[str]] = {}
        for w in self.known:
            if len(w) >= 5 and w.isalpha():
                for d in {w} | {w[:i] + w[i + 1:] for i in range(len(w))}:
                    self._known_deletes.setdefault(d, set()).add(w)
        self._unknown_cache: dict[str, bool] = {}

    def unknown(self, word: str) -> bool:
        """A word that is neither vocabulary nor ordinary prose: it may carry a part we cannot read.

        Plain inflections of a known word ('measurements', 'enlarged') and one-typo prose words
        ('measurres') are known.
        """
        if word in self.known or len(word) < 2 or word[0].isdigit():
            return False
        hit = self._unknown_cache.get(word)
        if hit is None:
            hit = not (len(word) >= 5 and (self._inflected(word) or self._typo(word)))
            if len(self._unknown_cache) < _FUZZY_CACHE_MAX:
                self._unknown_cache[word] = hit
        return hit

    def _inflected(self, word: str) -> bool:
        for suffix, add in (("s", ""), ("es", ""), ("ed", ""), ("ed", "e"), ("d", ""), ("ly", ""), ("ing", ""),
                            ("ing", "e")):
            if word.endswith(suffix) and word[:-len(suffix)] + add in self.known:
                return True
        return False

    def _typo(self, word: str) -> bool:
        cands: set[str] = set()
        for d in {word} | {word[:i] + word[i + 1:] for i in range(len(word))}:
            cands |= self._known_deletes.get(d, set())
        return any(c[0] == word[0] and _one_edit(word, c) for c in cands)

    # -- reading ----------------------------------------------------------------------------
    def correct(self, word: str, prev: str = "") -> str:
        """A one-typo word ('ejecton', 'diastloic', 'rght', 'weigt') -> the vocabulary word.

        One edit (insertion, deletion, substitution or swap of neighbours), same first letter,
        and exactly one closest vocabulary word, or one that makes a phrase with the word before
        ('end-diastolic volue' -> 'volume', not 'value'); common English words are never changed.
        """
        hit = self.corrected.get(word)
        if hit is not None:
            return hit
        if len(word) < 4 or word in self.vocab or word in COMMON_WORDS or not word.isalpha():
            return word
        hit = self._fuzzy_cache.get((word, prev))
        if hit is not None:
            return hit
        cands: set[str] = set()
        for d in {word} | {word[:i] + word[i + 1:] for i in range(len(word))}:
            cands |= self._deletes.get(d, set())
        close = [c for c in cands if c[0] == word[0] and _one_edit(word, c)]
        if len(close) <= 1:  # no choice to make: the word before does not matter
            result = close[0] if close else word
            if len(self.corrected) < _FUZZY_CACHE_MAX:
                self.corrected[word] = result
            return result
        close = [c for c in close if (prev, c) in self._bigrams] or close
        if len(close) > 1:  # 'systolc': 'systolic' or 'systole' mean the same after 'end'
            meanings = {self.entries.get((prev, c)) or self.entries.get((c,)) for c in close}
            if len(meanings) == 1 and None not in meanings:
                close = sorted(close)[:1]
        if len(close) > 1:  # a dropped letter is the commonest slip: 'inferolateraly'
            longer = [c for c in close if len(c) == len(word) + 1]
            close = longer if len(longer) == 1 else close
        result = close[0] if len(close) == 1 else word
        if len(self._fuzzy_cache) < _FUZZY_CACHE_MAX:
            self._fuzzy_cache[(word, prev)] = result
        return result

    def resolve(self, slots: dict[str, str], unit: str | None, vside: str | None, aside: str | None,
                guarded: bool = False, side_default: bool = True, t1_default: bool = True) -> str | None:
        """The field named by label parts + the value's canonical unit + context sides, or None.

        ``vside``/``aside``: the ventricle/atrium side from the context when the label names none.
        ``guarded``: the label has a token we cannot read, which may be the very part a default would
        supply, so nothing is defaulted (side LV, absolute, native myocardium, quantity from the unit).
        ``side_default``: without a side from label or context, a ventricle field means the LV.
        ``t1_default``: a T1 without tissue ('native T1', 't1n') means the myocardium. Contrast is
        never defaulted: native and post-contrast T1 overlap (600-900 ms).
        """
        key = (tuple(slots.items()), unit, vside, aside, guarded, side_default, t1_default)
        if key in self._resolved:
            return self._resolved[key]
        field = self._resolve(slots, unit, vside, aside, guarded, side_default and not guarded,
                              t1_default and not guarded)
        if len(self._resolved) < _FUZZY_CACHE_MAX:
            self._resolved[key] = field
        return field

    def _resolve(self, slots: dict[str, str], unit: str | None, vside: str | None, aside: str | None,
                 guarded: bool, side_default: bool, t1_default: bool) -> str | None:
        qty = slots.get("qty")
        phase = slots.get("phase")
        side = slots.get("side")
        if qty is None and guarded:
            return None
        if qty is None:
            measure, loc = slots.get("measure"), slots.get("loc")
            if loc:  # 'septum 24 mm', 'wall thickness 1.1 cm inferolaterally'
                qty = "AWT" if loc == "SEPT" else "IWT"
            elif measure == "WTABBR":
                qty = "WEIGHT"
            elif side in ATRIA and unit in ("mL", "mL/m^2"):
                qty = "VOL"  # 'the left atrium measured 95 ml'
            elif side in VENTRICLES and unit in ("g", "g/m^2"):
                qty = "MASS"  # 'LV 130 g'
            elif side in VENTRICLES and phase and unit in ("mL", "mL/m^2"):
                qty = "VOL"  # 'LV ... 245 ml at end-diastole'
            elif side in VENTRICLES and phase and unit == "cm":
                qty = "DIAM"  # 'the LV measures 6.2 cm in diastole'
            else:
                return None
        if qty == "VOL" and phase and side not in ATRIA:
            qty = "EDV" if phase == "ED" else "ESV"
        elif qty == "DIAM":
            if guarded and not phase:
                return None
            qty = "ESD" if phase == "ES" else "EDD"
        elif qty == "BP" and phase:
            qty = "SBP" if phase == "ES" else "DBP"
        if unit in INDEXED_UNITS:
            indexed = True
        elif unit in ABSOLUTE_UNITS:
            indexed = False
        else:
            indexed = slots.get("index") == "INDEX"
            if guarded and not indexed and len({s.get("index") for _, s in self.by_qty.get(qty, ())}) > 1:
                return None  # 'LVEDV XQ 55': XQ may be 'indexed'
        cands = [(k, s) for k, s in self.by_qty.get(qty, ()) if (s.get("index") == "INDEX") == indexed]
        if not cands:
            return None
        field_sides = {s.get("side") for _, s in cands}
        if field_sides != {None}:
            group = VENTRICLES if field_sides & set(VENTRICLES) else ATRIA
            if side is not None and side not in group:
                return None
            if len(field_sides) == 1:
                want = side or next(iter(field_sides))  # LV-only fields (wall thickness) need no context
            else:
                want = side or (vside if group == VENTRICLES else aside) or (
                    "LV" if group == VENTRICLES and side_default else None)
            cands = [(k, s) for k, s in cands if s.get("side") == want]
        if any("view" in s for _, s in cands):
            cands = [(k, s) for k, s in cands if s.get("view") == slots.get("view")]
        if any("contrast" in s for _, s in cands):
            if "contrast" not in slots or (not t1_default and "tissue" not in slots):
                return None  # 'T1 1580 ms', 'native T1 XQ 1580 ms': XQ may be 'blood pool'
            contrast = slots["contrast"]
            tissue = slots.get("tissue", "MYO")  # 'native T1' is the myocardium's
            cands = [(k, s) for k, s in cands if s.get("contrast") == contrast and s.get("tissue") == tissue]
        return cands[0][0] if len(cands) == 1 else None


@lru_cache(maxsize=1)
def get_lexicon() -> Lexicon:
    return Lexicon()
