"""``rules``: the deterministic extractor. No GPU, no model: a small grammar over labels, numbers
and units, driven by the catalog vocabulary. It runs alone where a hospital has no GPU and gives
every LLM answer an independent cross-check.

Modules: ``tokens`` (numbers with units, dates/ranges/list markers flagged), ``lexicon`` (label
vocabulary from the catalog, typo-tolerant), ``grammar`` (labels bind the numbers after them,
prose and lists included), ``tables`` (column headers), ``document`` (headings and context),
``category`` (phrase rules on the impression), ``words`` (ordinary prose, to tell an unreadable
token from a plain word).

Shapes it does not understand give nulls, never a wrong number: a value in an unknown unit, a label
with a token it cannot read (which may be the very part a default would fill in), a wide table
whose current row or column alignment cannot be told.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import TypeAdapter

from extraction.backends.rules import compiled as _compiled

# The mypyc build of the current sources (``python -m extraction.backends.rules.build``), when there
# is one, goes first on this package's path: then the hot modules imported below are the compiled
# ones. Without it (or with CMRX_RULES_COMPILED=0) they are the .py modules: the same program.
_BUILD = _compiled.activate(__path__)
if _BUILD is not None:
    try:
        from extraction.backends.rules import document, grammar, lexicon, tables, tokens  # noqa: F401
    except ImportError as _exc:  # an unusable build: forget it, the .py modules run
        import sys as _sys

        print(f"cmrx rules: compiled build {_BUILD} not importable ({_exc}); using pure Python", file=_sys.stderr)
        _compiled.deactivate(__path__, _BUILD)
        _BUILD = None

from extraction.backends.base import BackendOutput, ExtractionBackend, Sample
from extraction.backends.rules.category import classify
from extraction.backends.rules.document import MAX_TEXT, DocumentReader, looks_like_text
from extraction.backends.rules.grammar import Candidate
from extraction.backends.rules.lexicon import get_lexicon
from extraction.backends.rules import tokens
from schemas.catalog import FIELD_KEYS
from schemas.messages import Evidence, ModelInfo

VERSION = "rules-1"
# True when the compiled (mypyc) modules run, False for the .py modules (same results).
COMPILED: bool = _compiled.is_compiled(tokens)
_DECIMALS = re.compile(r"\d+(?:[.,](\d+))?")
# A report's evidence is validated in one call (a call per field cost a third more).
_EVIDENCE = TypeAdapter(dict[str, Evidence])


@dataclass
class RulesResult:
    values: dict[str, float | None]
    evidence: dict[str, Evidence]
    category: str | None
    category_reason: str


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= max(0.01, 0.005 * abs(b))


def _decimals(c: Candidate) -> int:
    m = _DECIMALS.search(c.original)
    return len(m.group(1) or "") if m else 0


def vote(cands: list[Candidate]) -> list[Candidate]:
    """The agreeing candidates of the most structured source, or [] when they disagree.

    A table row beats a measurement line beats prose. Values equal after rounding to the less
    precise one agree (table 42.4 %, impression 42 %): the more precise one is kept.
    """
    if len(cands) == 1:
        return [cands[0]]  # most fields have one candidate: nothing to vote on
    top = max(c.priority for c in cands)
    group = [c for c in cands if c.priority == top]
    # decimals once per candidate (a regex each), in the order the sort needs them
    dec = {id(c): _decimals(c) for c in group}
    group.sort(key=lambda c: dec[id(c)], reverse=True)
    best = group[0]
    best_dec = dec[id(best)]
    for c in group[1:]:
        if _close(c.value, best.value):
            continue
        d = dec[id(c)]
        if round(best.value, d) == round(c.value, d) and d < best_dec:
            continue
        return []
    return [c for c in group if _close(c.value, best.value) or dec[id(c)] < best_dec]


def extract_rules(text: str) -> RulesResult:
    """Values (canonical units, 2 decimals), evidence and category of one cleaned report."""
    reader = DocumentReader(get_lexicon())
    by_key: dict[str, list[Candidate]] = {}
    is_text = looks_like_text(text)
    for c in reader.candidates(text, checked=True) if is_text else ():
        by_key.setdefault(c.key, []).append(c)
    values: dict[str, float | None] = dict.fromkeys(FIELD_KEYS)
    evidence: dict[str, dict] = {}
    n = len(text)
    for key, cands in by_key.items():
        chosen = vote(cands)
        if not chosen:
            continue
        values[key] = chosen[0].value
        spans: list[dict] = []  # validated into Span and Evidence models below, all at once
        seen: set[tuple[int, int]] = set()
        for c in chosen:
            for s, e in c.spans + c.extra_spans:
                if (s, e) not in seen and 0 <= s < e <= n:
                    seen.add((s, e))
                    spans.append({"start": s, "end": e, "text": text[s:e]})
        evidence[key] = {"spans": spans, "original_value": chosen[0].original}
    if is_text:
        category, reason = classify(text[:MAX_TEXT])
    else:
        category, reason = None, "not a report: the text reads as noise"
    return RulesResult(values, _EVIDENCE.validate_python(evidence), category, reason)


class RulesBackend(ExtractionBackend):
    """Deterministic: one sample; the pipeline replicates it for the stability score."""

    name = "rules"
    deterministic = True

    def info(self) -> ModelInfo:
        return ModelInfo(backend=self.name, model=VERSION)

    def extract(self, text: str, *, n_samples: int = 1) -> BackendOutput:
        r = extract_rules(text)
        return BackendOutput(samples=[Sample(values=r.values, category=r.category, category_reason=r.category_reason,
                                             evidence=r.evidence)])


__all__ = ["COMPILED", "RulesBackend", "RulesResult", "extract_rules", "vote"]
