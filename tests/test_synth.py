"""The synthetic report generator (``cmrx synth``): determinism, truth fidelity, PHI, physiology.

The relation check below is written from the facts file's formulas (section 4) on its own, not
borrowed from the generator: each printed value is an interval (+/- half its last digit, widened for
imperial units), and a relation holds when the interval of its left side meets the range its
right side takes over the corners of its operands' intervals (all formulas are monotone).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import time
from pathlib import Path

import pytest

from schemas.catalog import CATALOG, CATEGORIES, FIELD_KEYS
from training.synth import (DEV_LAYOUTS, HELD_OUT_LAYOUTS, LAYOUTS, SynthReport, add_arguments, generate,
                            resolve_layouts, run)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "synth-sample"
ALL = list(LAYOUTS)
DEID_KEYWORDS = ("mrn", "name", "dob", "date", "account", "physician", "nurse", "technologist")


@pytest.fixture(scope="module")
def corpus() -> list[SynthReport]:
    """Four rotations over every layout, a fifth of them with planted inconsistencies."""
    return generate(len(ALL) * 4, seed=2024, layouts=ALL, inconsistency_rate=0.2)


@pytest.fixture(scope="module")
def planted() -> list[SynthReport]:
    return generate(len(ALL) * 3, seed=99, layouts=ALL, inconsistency_rate=1.0)


# -- number matching --------------------------------------------------------------------------------

_TOKEN = re.compile(r"\d+(?:[.,]\d+)?")
_THOUSANDS = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_FEET = re.compile(r"(\d)\s*(?:'|ft)\s*(\d{1,2})", re.IGNORECASE)
# Printed unit -> canonical unit factors the facts file allows (section 7), per canonical unit.
_FACTORS = {"cm": (1.0, 0.1, 100.0, 2.54), "kg": (1.0, 0.45359237), "cm^2": (1.0, 0.01), "ms": (1.0, 1000.0),
            "%": (1.0, 100.0)}


def numbers_in(text: str) -> set[float]:
    """Every number a reader could see: decimal points, decimal commas, '1,020' thousands, ft/in."""
    out: set[float] = {float(tok.replace(",", "")) for tok in _THOUSANDS.findall(text)}
    out |= {float(tok.replace(",", ".")) for tok in _TOKEN.findall(text)}
    for feet, inches in _FEET.findall(text):
        out.add(int(feet) * 12 + int(inches))
    return out


def appears(value: float, key: str, numbers: set[float]) -> bool:
    factors = _FACTORS.get(CATALOG.field(key).unit, (1.0,))
    return any(abs(round(n * f, 2) - value) <= 0.011 for n in numbers for f in factors)


def same(a: float, b: float) -> bool:
    """The evaluation's match rule (facts file section 7)."""
    return abs(a - b) <= max(0.01, 0.005 * abs(b))


# -- the 22 relations, from the facts file ---------------------------------------------------------

INDEXED = [k for k in FIELD_KEYS if f"{k}I" in FIELD_KEYS]


def relations() -> list[tuple[str, str, tuple[str, ...], object]]:
    """(name, left side, operands, right-side formula) for the 22 relations."""
    rels: list[tuple[str, str, tuple[str, ...], object]] = [
        ("1 Mosteller", "BSA", ("HEIGHT", "WEIGHT"), lambda h, w: math.sqrt(h * w / 3600))]
    for s in ("LV", "RV"):
        rels += [
            (f"{s}EF from volumes", f"{s}EF", (f"{s}EDV", f"{s}ESV"), lambda edv, esv: (edv - esv) / edv * 100),
            (f"{s}SV", f"{s}SV", (f"{s}EDV", f"{s}ESV"), lambda edv, esv: edv - esv),
            (f"{s}CO", f"{s}CO", (f"{s}SV", "BHR"), lambda sv, hr: sv * hr / 1000),
            (f"{s}EF from SV", f"{s}EF", (f"{s}SV", f"{s}EDV"), lambda sv, edv: sv / edv * 100),
        ]
    rels += [(f"BSA from {x}", "BSA", (x, f"{x}I"), lambda a, ai: a / ai) for x in INDEXED]
    rels.append(("22 ECV", "ECV", ("HCT", "POSTT1M", "PRET1M", "POSTT1B", "PRET1B"),
                 lambda hct, m1, m0, b1, b0: (100 - hct) * (1 / m1 - 1 / m0) / (1 / b1 - 1 / b0)))
    return rels


def test_there_are_22_relations() -> None:
    assert len(INDEXED) == 12
    assert len(relations()) == 22


# Imperial heights/weights are printed to the inch/pound: wider than their 2-decimal truth suggests.
_MIN_HALF_UNIT = {"HEIGHT": 1.27, "WEIGHT": 0.23}
# A truth loses trailing zeros ("2.00 m2" -> 2); reports print BSA with 2 decimals and outputs and
# cm lengths with at least 1, so their precision is never coarser than this.
_MAX_HALF_UNIT = {"m^2": 0.005, "L/min": 0.05, "L/min/m^2": 0.05, "cm": 0.05}


def half_unit(key: str, value: float) -> float:
    text = repr(float(value))
    decimals = 0 if float(value).is_integer() else len(text.split(".")[1])
    half = 0.5 * 10.0 ** -decimals
    if key != "HEIGHT":
        half = min(half, _MAX_HALF_UNIT.get(CATALOG.field(key).unit, half))
    return max(half, _MIN_HALF_UNIT.get(key, 0.0))


def relation_holds(fields: dict[str, float | None], lhs: str, operands: tuple[str, ...], fn) -> bool | None:
    """None when not every operand is stated; else whether the printed values are consistent."""
    if any(fields[k] is None for k in (lhs, *operands)):
        return None
    boxes = [(fields[k] - half_unit(k, fields[k]), fields[k] + half_unit(k, fields[k])) for k in operands]
    corners = [fn(*c) for c in itertools.product(*boxes)]
    lo, hi = min(corners), max(corners)
    left = fields[lhs]
    d = half_unit(lhs, left)
    return left + d >= lo - 1e-9 and left - d <= hi + 1e-9


# -- tests ------------------------------------------------------------------------------------------

def test_deterministic_for_a_seed() -> None:
    a = generate(25, seed=5, layouts=ALL, inconsistency_rate=0.3)
    b = generate(25, seed=5, layouts=ALL, inconsistency_rate=0.3)
    assert [(r.text, r.to_json()) for r in a] == [(r.text, r.to_json()) for r in b]
    c = generate(25, seed=6, layouts=ALL, inconsistency_rate=0.3)
    assert [r.text for r in a] != [r.text for r in c]


def test_report_does_not_depend_on_n() -> None:
    assert [r.text for r in generate(5, seed=3)] == [r.text for r in generate(12, seed=3)[:5]]


@pytest.mark.parametrize("name", ALL)
def test_every_layout_renders(name: str) -> None:
    reports = generate(10, seed=17, layouts=[name], inconsistency_rate=0.3)
    for r in reports:
        assert r.layout == name and r.style == LAYOUTS[name].style
        assert r.text.strip() and r.category in CATEGORIES
        data = r.to_json()
        assert list(data["fields"]) == list(FIELD_KEYS)
        assert 6 <= sum(v is not None for v in data["fields"].values()) <= 52
        assert set(data) >= {"fields", "CATEGORY", "phi", "style", "notes", "layout"}
        assert data["phi"], "every report plants PHI"


def test_every_truth_value_appears_in_the_text(corpus: list[SynthReport]) -> None:
    for r in corpus:
        numbers = numbers_in(r.text)
        missing = [(k, v) for k, v in r.fields.items() if v is not None and not appears(v, k, numbers)]
        assert not missing, f"{r.name} ({r.layout}): {missing}"


def test_every_planted_phi_string_appears(corpus: list[SynthReport]) -> None:
    for r in corpus:
        assert all(p in r.text for p in r.phi), f"{r.name} ({r.layout})"


def test_phi_on_lines_with_and_without_deid_keywords(corpus: list[SynthReport]) -> None:
    """The published filter drops lines with keywords; PHI must also sit on lines it keeps."""
    with_kw = without_kw = 0
    for r in corpus:
        for line in r.text.splitlines():
            if any(p in line for p in r.phi):
                if any(kw in line.lower() for kw in DEID_KEYWORDS):
                    with_kw += 1
                else:
                    without_kw += 1
    assert with_kw > 50 and without_kw > 50


def test_relations_hold_without_planted_inconsistencies(corpus: list[SynthReport]) -> None:
    checked = 0
    for r in corpus:
        if r.inconsistent_fields:
            continue
        for name, lhs, operands, fn in relations():
            ok = relation_holds(r.fields, lhs, operands, fn)
            if ok is not None:
                checked += 1
                assert ok, f"{r.name} ({r.layout}): relation {name} fails: " + \
                    str({k: r.fields[k] for k in (lhs, *operands)})
    assert checked > 300


def test_planted_inconsistencies_break_a_relation(planted: list[SynthReport]) -> None:
    with_plants = [r for r in planted if r.inconsistent_fields]
    assert len(with_plants) > 0.8 * len(planted)
    for r in with_plants:
        data = r.to_json()
        assert data["inconsistent_fields"] == r.inconsistent_fields
        assert all(r.fields[k] is not None for k in r.inconsistent_fields)
        assert "inconsistency" in data["notes"]
        for key in r.inconsistent_fields:
            broken = [name for name, lhs, ops, fn in relations()
                      if key in (lhs, *ops) and relation_holds(r.fields, lhs, ops, fn) is False]
            assert broken, f"{r.name} ({r.layout}): perturbing {key} broke no relation"


def test_no_inconsistency_key_unless_planted(corpus: list[SynthReport]) -> None:
    clean = [r for r in corpus if not r.inconsistent_fields]
    assert clean and all("inconsistent_fields" not in r.to_json() for r in clean)


def test_distractors_are_never_truth_of_a_confusable_field(corpus: list[SynthReport]) -> None:
    kinds: set[str] = set()
    for r in corpus:
        for d in r.distractors:
            assert d.text in r.text.upper() or d.text in r.text
            kinds.add(d.what)
            for key in d.fields:
                truth = r.fields[key]
                assert truth is None or not same(d.value, truth), f"{r.name} ({r.layout}): {d} equals {key}={truth}"
    assert sum(len(r.distractors) for r in corpus) > 100
    assert any("LVOT" in k for k in kinds) and any("Stress" in k for k in kinds)


def test_layouts_rotate() -> None:
    reports = generate(2 * len(DEV_LAYOUTS), seed=8)
    first = [r.layout for r in reports[:len(DEV_LAYOUTS)]]
    assert sorted(first) == sorted(DEV_LAYOUTS)
    assert all(a.layout != b.layout for a, b in zip(reports, reports[1:]))
    assert [r.layout for r in reports[len(DEV_LAYOUTS):]] == first


def test_all_categories_in_50_reports() -> None:
    reports = generate(50, seed=21, layouts=ALL)
    counts = {c: sum(r.category == c for r in reports) for c in CATEGORIES}
    assert all(n >= 8 for n in counts.values()), counts


def test_category_physiology(corpus: list[SynthReport]) -> None:
    """Coarse disease signatures on stated values: the category is recoverable from the numbers."""
    for r in corpus:
        f = r.fields
        if r.category == "HCM" and f["LVAWT"] is not None and not r.inconsistent_fields:
            assert f["LVAWT"] >= 1.3
        if r.category == "DCM" and f["LVEF"] is not None and "LVEF" not in r.inconsistent_fields:
            assert f["LVEF"] < 45
        if r.category in ("Ebstein", "PAH") and f["RVEDVI"] is not None and "RVEDVI" not in r.inconsistent_fields:
            assert f["RVEDVI"] > 80
        if r.category == "PAH" and f["RVEF"] is not None and "RVEF" not in r.inconsistent_fields:
            assert f["RVEF"] < 50


def test_values_within_plausible_ranges(corpus: list[SynthReport]) -> None:
    for r in corpus:
        for k, v in r.fields.items():
            lo, hi = CATALOG.field(k).plausible
            assert v is None or lo <= v <= hi, f"{r.name} ({r.layout}): {k}={v} outside {lo}-{hi}"


def test_sparse_and_rich_reports() -> None:
    counts = [sum(v is not None for v in r.fields.values()) for r in generate(300, seed=4, layouts=ALL)]
    assert min(counts) <= 10 and max(counts) >= 46


def test_units_and_conversions_vary() -> None:
    reports = generate(300, seed=12, layouts=ALL)
    notes = " ".join(" ".join(r.notes) for r in reports)
    for needle in ("inches", "feet and inches", "metres", "lb", "mm (-> cm)", "mm^2", "seconds", "fraction",
                   "decimal commas", "thousands separator"):
        assert needle in notes, needle
    text = "\n".join(r.text for r in reports)
    for unit in (" mL", " ml", " cc", "ml/m2", "ml/m^2", "mL/m²", "cm²", "cm2", "sq cm", "msec", " ms",
                 "bpm", "/min", " mm"):
        assert unit in text, unit


def test_layout_selection() -> None:
    assert len(HELD_OUT_LAYOUTS) == 3 and set(HELD_OUT_LAYOUTS) <= set(LAYOUTS)
    assert len(DEV_LAYOUTS) >= 12 and not set(DEV_LAYOUTS) & set(HELD_OUT_LAYOUTS)
    assert resolve_layouts(None) == list(DEV_LAYOUTS)
    assert resolve_layouts("all") == ALL
    assert resolve_layouts(None, held_out_only=True) == list(HELD_OUT_LAYOUTS)
    assert resolve_layouts("csv_export,typo_dictation") == ["csv_export", "typo_dictation"]
    with pytest.raises(ValueError):
        resolve_layouts("no_such_layout")
    assert {r.layout for r in generate(9, seed=1, layouts=resolve_layouts(None, True))} == set(HELD_OUT_LAYOUTS)
    assert not {r.layout for r in generate(30, seed=1)} & set(HELD_OUT_LAYOUTS)


def _cli(tmp: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(["--out", str(tmp), *extra]))


def test_cli_writes_the_dev_set_format(tmp_path: Path) -> None:
    assert _cli(tmp_path, "--n", "12", "--seed", "7", "--inconsistency-rate", "0.5", "--layouts", "all") == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([f"{i:04d}.txt" for i in range(1, 13)] + [f"{i:04d}.json" for i in range(1, 13)])
    planted = 0
    for i in range(1, 13):
        data = json.loads((tmp_path / f"{i:04d}.json").read_text(encoding="utf-8"))
        assert list(data["fields"]) == list(FIELD_KEYS)
        assert data["CATEGORY"] in CATEGORIES and isinstance(data["phi"], list)
        assert isinstance(data["style"], str) and isinstance(data["notes"], str) and data["layout"] in LAYOUTS
        planted += "inconsistent_fields" in data
    assert planted > 0
    again = tmp_path / "again"
    assert _cli(again, "--n", "12", "--seed", "7", "--inconsistency-rate", "0.5", "--layouts", "all") == 0
    assert all((again / n).read_bytes() == (tmp_path / n).read_bytes() for n in names)
    assert _cli(tmp_path / "bad", "--layouts", "nope") == 2


def test_500_reports_take_seconds() -> None:
    start = time.perf_counter()
    reports = generate(500, seed=1, layouts=ALL, inconsistency_rate=0.1)
    assert len(reports) == 500
    assert time.perf_counter() - start < 30


def test_committed_sample_matches_the_generator() -> None:
    """data/synth-sample is `cmrx synth --n 20 --seed 7 --layouts all`; regenerate it after changes."""
    reports = generate(20, seed=7, layouts=ALL)
    for r in reports:
        assert (SAMPLE / f"{r.name}.txt").read_text(encoding="utf-8") == r.text
        expected = json.dumps(r.to_json(), indent=2, ensure_ascii=False) + "\n"
        assert (SAMPLE / f"{r.name}.json").read_text(encoding="utf-8") == expected
