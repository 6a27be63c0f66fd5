"""Per-field confidence exactly as published: stability, consistency, distribution; mean = confidence.

Every score carries a reason a reviewer can act on (which samples differ, which relation
disagreed and by how much, how many SDs out). Conventions kept from the published method:
- pairwise s(a, b) = exp(-2|a-b| / (|a+b|/2)); both null -> 1.0; exactly one null -> 0.5;
  equal values -> 1.0 (this also covers 0 and 0); a + b == 0 with a != b -> 0.0;
- a relation is evaluated only when all its operands are present and it does not divide by zero;
- S_cons = 0.7 for a field in no evaluable relation; S_dist = 0.7 for a null value or a field
  without a reference distribution; the 0.7 review threshold is configurable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from schemas.catalog import CATALOG, FIELD_KEYS
from schemas.messages import Score  # noqa: F401  (re-exported for callers)

DEFAULT = 0.7
Value = float | None


def pairwise(a: Value, b: Value) -> float:
    if a is None and b is None:
        return 1.0
    if a is None or b is None:
        return 0.5
    if a == b:
        return 1.0
    half_sum = abs(a + b) / 2
    if half_sum == 0:
        return 0.0
    return math.exp(-2 * abs(a - b) / half_sum)


def vote(samples: Sequence[Value]) -> Value:
    """Published vote: v1 if v1 equals v2 or v3; else v2 if v2 equals v3; else v1.

    Generalised to any count: the first sample that equals any later one, else the first.
    """
    if not samples:
        return None
    for i, candidate in enumerate(samples):
        if any(candidate == later for later in samples[i + 1 :]):
            return candidate
    return samples[0]


def stability(samples: Sequence[Value]) -> Score:
    value, reason = stability_parts(samples)
    return Score(name="stability", value=value, reason=reason)


def stability_parts(samples: Sequence[Value]) -> tuple[float, str]:
    """(value, reason) of ``stability``; the pipeline builds the Score itself."""
    n = len(samples)
    if n < 2:
        return 1.0, "single sample"
    first = samples[0]
    # every pair scores exactly 1.0 (NaN != NaN, so NaN samples take the long way: ``count``
    # also counts identical objects, hence ``first == first``)
    if first == first and samples.count(first) == n:
        return 1.0, f"all {n} samples agree"
    pairs = [(i, j, pairwise(samples[i], samples[j])) for i in range(n) for j in range(i + 1, n)]
    value = sum(s for _, _, s in pairs) / len(pairs)
    if value >= 1.0:
        return 1.0, f"all {n} samples agree"
    shown = ", ".join("null" if v is None else f"{v:g}" for v in samples)
    return value, f"samples differ: [{shown}]"


# ---- consistency: the 22 physiologic relations ------------------------------------------------


@dataclass(frozen=True)
class Relation:
    """lhs = formula(operands). ``formula`` may raise ZeroDivisionError: then it is not evaluable."""

    name: str
    lhs: str
    operands: tuple[str, ...]
    formula: Callable[..., float]


def _ratio(x: float, xi: float) -> float:
    return x / xi


RELATIONS: tuple[Relation, ...] = (
    Relation("Mosteller BSA", "BSA", ("HEIGHT", "WEIGHT"), lambda h, w: math.sqrt(h * w / 3600)),
    Relation("LVEF from volumes", "LVEF", ("LVEDV", "LVESV"), lambda edv, esv: (edv - esv) / edv * 100),
    Relation("RVEF from volumes", "RVEF", ("RVEDV", "RVESV"), lambda edv, esv: (edv - esv) / edv * 100),
    Relation("LVSV = LVEDV - LVESV", "LVSV", ("LVEDV", "LVESV"), lambda edv, esv: edv - esv),
    Relation("RVSV = RVEDV - RVESV", "RVSV", ("RVEDV", "RVESV"), lambda edv, esv: edv - esv),
    Relation("LVCO = LVSV x HR", "LVCO", ("LVSV", "BHR"), lambda sv, hr: sv * hr / 1000),
    Relation("RVCO = RVSV x HR", "RVCO", ("RVSV", "BHR"), lambda sv, hr: sv * hr / 1000),
    Relation("LVEF from LVSV", "LVEF", ("LVSV", "LVEDV"), lambda sv, edv: sv / edv * 100),
    Relation("RVEF from RVSV", "RVEF", ("RVSV", "RVEDV"), lambda sv, edv: sv / edv * 100),
    *(
        Relation(f"BSA = {x} / {x}I", "BSA", (x, f"{x}I"), _ratio)
        for x in ("LVEDV", "RVEDV", "LVESV", "RVESV", "LVCO", "RVCO", "LVMASS", "RVMASS", "LVSV", "RVSV", "LAV", "RAV")
    ),
    Relation(
        "ECV from T1 and HCT",
        "ECV",
        ("HCT", "POSTT1M", "PRET1M", "POSTT1B", "PRET1B"),
        lambda hct, post_m, pre_m, post_b, pre_b: (100 - hct) * (1 / post_m - 1 / pre_m) / (1 / post_b - 1 / pre_b),
    ),
)
assert len(RELATIONS) == 22
assert all(r.lhs in FIELD_KEYS and set(r.operands) <= set(FIELD_KEYS) for r in RELATIONS)


@dataclass(frozen=True)
class RelationCheck:
    relation: Relation
    stated: float
    computed: float
    score: float


def evaluate_relations(values: dict[str, Value]) -> list[RelationCheck]:
    """Every relation whose operands are all present and that does not divide by zero."""
    return [RelationCheck(*check) for check in _checks(values)]


def _checks(values: dict[str, Value]) -> list[tuple[Relation, float, float, float]]:
    """``evaluate_relations`` as plain tuples (relation, stated, computed, score): the pipeline
    runs this for every report, and a frozen dataclass costs ~1 us to build."""
    checks = []
    get = values.get
    for relation in RELATIONS:
        stated = get(relation.lhs)
        if stated is None:
            continue
        operands = [get(k) for k in relation.operands]
        if None in operands:  # a float never equals None: the same test as ``v is None``
            continue
        try:
            computed = relation.formula(*operands)
        except (ZeroDivisionError, ValueError):  # ValueError: sqrt of a negative product
            continue
        checks.append((relation, stated, computed, pairwise(stated, computed)))
    return checks


_RELATION_KEYS = {relation: frozenset((relation.lhs, *relation.operands)) for relation in RELATIONS}
_NO_RELATION = (DEFAULT, "in no evaluable relation")


def consistency_scores(values: dict[str, Value]) -> dict[str, Score]:
    return {key: Score(name="consistency", value=value, reason=reason) for key, (value, reason) in consistency_parts(values).items()}


def consistency_parts(values: dict[str, Value]) -> dict[str, tuple[float, str]]:
    """(value, reason) of ``consistency_scores`` per field, in catalog order."""
    by_key: dict[str, list[tuple[Relation, float, float, float]]] = {}
    for check in _checks(values):  # in relation order, as the per-key lists always were
        for key in _RELATION_KEYS[check[0]]:
            by_key.setdefault(key, []).append(check)
    result = dict.fromkeys(FIELD_KEYS, _NO_RELATION)
    for key, mine in by_key.items():
        value = sum([c[3] for c in mine]) / len(mine)
        worst = min(mine, key=_check_score)  # the first lowest, as before
        rel, stated, computed, score = worst
        if score >= 0.99:
            reason = f"{len(mine)} relation(s) agree"
        else:
            gap = abs(stated - computed) / max(abs(stated), 1e-9) * 100
            reason = (
                f"{rel.name}: stated {rel.lhs} {stated:g} vs computed {computed:.4g} "
                f"({gap:.0f}% apart, score {score:.2f}); {len(mine)} relation(s) checked"
            )
        result[key] = (value, reason)
    return result


def _check_score(check: tuple[Relation, float, float, float]) -> float:
    return check[3]


# ---- distribution --------------------------------------------------------------------------


def distribution(key: str, value: Value) -> Score:
    score, reason = distribution_parts(key, value)
    return Score(name="distribution", value=score, reason=reason)


def distribution_parts(key: str, value: Value) -> tuple[float, str]:
    """(value, reason) of ``distribution``."""
    reference = _REFERENCES[key]
    if value is None:
        return DEFAULT, "null value"
    if reference is None:
        return DEFAULT, "no reference distribution"
    best_score, best_sex, best_z = -1.0, "", 0.0
    for sex, mu, sigma in reference:
        z = (value - mu) / sigma
        score = math.exp(-0.5 * (z / 6) ** 2)
        if score > best_score:
            best_score, best_sex, best_z = score, sex, z
    reason = f"{abs(best_z):.1f} SD {'above' if best_z >= 0 else 'below'} the {best_sex} mean"
    return best_score, reason


def _reference(key: str) -> tuple[tuple[str, float, float], ...] | None:
    reference = CATALOG.field(key).reference
    if reference is None:
        return None
    return (("male", *reference.male), ("female", *reference.female))


_REFERENCES = {key: _reference(key) for key in FIELD_KEYS}  # looked up per value; the catalog is frozen


# ---- combining and routing -----------------------------------------------------------------


def combine(scores: Sequence[Score], combiner: str = "published") -> float:
    """'published': mean of stability, consistency, distribution; 'extended': mean of all given."""
    if combiner == "published":
        chosen = [s.value for s in scores if s.name in ("stability", "consistency", "distribution")]
    elif combiner == "extended":
        chosen = [s.value for s in scores]
    else:
        raise ValueError(f"unknown combiner {combiner!r}")
    return sum(chosen) / len(chosen)


def route(confidence: float, threshold: float = DEFAULT) -> str:
    """At or above the threshold the field is published; below it goes to review."""
    return "publish" if confidence >= threshold else "review"
