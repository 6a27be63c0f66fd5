"""CATEGORY from the impression by weighted phrase rules kept as data (catalog ``rules.categories``).

The impression/conclusion/assessment section is read first (the history may name a disease that
was ruled out); the whole text is the fallback. A phrase after a negation ("no evidence of",
"without", "non-") counts nothing. The category with the highest summed weight wins; the reason
names the phrase that decided it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from extraction.backends.rules.lexicon import _one_edit
from schemas.catalog import CATALOG, CategoryRule

_SUMMARY = re.compile(
    r"^[ \t#*>\-]*(?:final |clinical |overall )?(impressions?|impr|conclusions?|assessment|summary|opinion|diagnos[ie]s)\b[ \t]*[:.\-]?",
    re.I | re.M,
)
_SECONDARY = re.compile(r"^[ \t#*>\-]*(interpretation|physician comments|comments?|findings)\b[ \t]*:?", re.I | re.M)
_NEGATION = frozenset({"no", "not", "without", "exclude", "excluded", "excludes", "unlikely", "negative",
                       "absence", "absent", "nor", "r/o", "against", "rather"})
_RULE_OUT = re.compile(r"\brule[sd]?\s+out\b|\bruling\s+out\b|\bno\s+evidence\b|\bno\s+features\b", re.I)
_CLAUSE_END = re.compile(r"[.;\n]")
_NON_END = re.compile(r"non[\s\-]*$", re.I)
_LOWER_WORD = re.compile(r"[a-z/]+")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class _Phrase:
    category: str
    weight: float
    text: str


def _norm(s: str) -> str:
    return " ".join(_NOT_ALNUM.sub(" ", s.lower().replace("'", "")).split())


@lru_cache(maxsize=1)
def _vocab() -> frozenset[str]:
    return frozenset(w for r in CATALOG.rules.categories for p in r.phrases for w in _norm(p).split() if len(w) >= 5)


@lru_cache(maxsize=4096)
def _fix_word(word: str) -> str:
    """'cardiomyoapthy' -> 'cardiomyopathy': one edit from exactly one category word."""
    low = word.lower()
    if len(low) < 6 or low in _vocab():
        return word
    close = [w for w in _vocab() if w[0] == low[0] and _one_edit(low, w)]
    return close[0] if len(close) == 1 else word


_LONG_WORD = re.compile(r"[A-Za-z]{6,}")


def _fix_typos(text: str) -> str:
    """Most reports have no typo in a category word: check the distinct words before rewriting."""
    if all(_fix_word(w) == w for w in set(_LONG_WORD.findall(text))):
        return text
    return _LONG_WORD.sub(lambda m: _fix_word(m.group(0)), text)


@lru_cache(maxsize=1)
def _matcher() -> tuple[re.Pattern[str], dict[str, _Phrase]]:
    rules: tuple[CategoryRule, ...] = CATALOG.rules.categories
    table: dict[str, _Phrase] = {}
    for rule in rules:
        for phrase in rule.phrases:
            table.setdefault(_norm(phrase), _Phrase(rule.category, rule.weight, phrase))
    alts = sorted(table, key=len, reverse=True)
    pattern = "|".join(r"[\s\-]+".join(re.escape(w) for w in key.split()) for key in alts)
    # The phrases' first letters, looked ahead for first: the search then skips every other
    # position at once instead of trying each phrase there (2-3x faster, same matches).
    first = "".join(sorted({re.escape(key[0]) for key in alts}))
    return re.compile(rf"(?=[{first}])(?<![A-Za-z0-9])(?:{pattern})(?:'?s)?(?![A-Za-z0-9])", re.I), table


def _negated(text: str, start: int) -> bool:
    window = text[max(0, start - 60):start]
    clause = _CLAUSE_END.split(window)[-1]
    if _NON_END.search(clause):
        return True
    words = _LOWER_WORD.findall(clause.lower())[-5:]
    return any(w in _NEGATION for w in words) or bool(_RULE_OUT.search(clause))


def _section(text: str) -> tuple[str, str, int]:
    """(where, section text, offset): impression-like section, else comments, else everything."""
    for pattern in (_SUMMARY, _SECONDARY):
        m = pattern.search(text)
        if m:
            return m.group(1).lower(), text[m.end():], m.end()
    return "text", text, 0


def classify(text: str) -> tuple[str | None, str]:
    """(category, reason) e.g. ('HCM', "impression: 'hypertrophic cardiomyopathy' -> HCM")."""
    regex, table = _matcher()
    where, section, _ = _section(text)
    result = _score(_fix_typos(section), regex, table)
    if result is None and where != "text":
        where, result = "text", _score(_fix_typos(text), regex, table)
    if result is None:
        return None, "no category phrase found"
    category, phrase = result
    return category, f"{where}: '{phrase}' -> {category}"


def _score(text: str, regex: re.Pattern[str], table: dict[str, _Phrase]) -> tuple[str, str] | None:
    scores: dict[str, float] = {}
    best_phrase: dict[str, tuple[float, int, str]] = {}
    first_at: dict[str, int] = {}
    for m in regex.finditer(text):
        key = _norm(m.group(0))
        phrase = table.get(key) or table.get(key[:-1] if key.endswith("s") else key)
        if phrase is None or _negated(text, m.start()):
            continue
        cat = phrase.category
        scores[cat] = scores.get(cat, 0.0) + phrase.weight
        first_at.setdefault(cat, m.start())
        if cat not in best_phrase or phrase.weight > best_phrase[cat][0]:
            best_phrase[cat] = (phrase.weight, m.start(), m.group(0))
    if not scores:
        return None
    cat = max(scores, key=lambda c: (scores[c], -first_at[c]))
    return cat, best_phrase[cat][2]
