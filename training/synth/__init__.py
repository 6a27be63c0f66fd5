"""Generate synthetic CMR reports with truth in the dev-set format (NNNN.txt + NNNN.json).

Each report: a patient with disease-consistent physiology (``physiology``), a made-up identity
(``phi``), one of the layouts (``layouts``) that prints a subset of the 52 fields in its own units
and rounding, planted PHI and distractor numbers, and optionally one or two values perturbed so
that a physiologic relation breaks (``--inconsistency-rate``). The truth is exactly what the text
states: every printed field value is recorded as it is printed (``sheet``).

Layouts rotate report by report; categories rotate in shuffled blocks of five. Everything follows
from ``--seed``; report ``i`` does not depend on ``--n``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.catalog import CATEGORIES, FIELD_KEYS

from .layouts import DEV_LAYOUTS, HELD_OUT_LAYOUTS, LAYOUTS, Layout
from .phi import sample_identity
from .physiology import choose_stated, plant_inconsistency, sample_case
from .sheet import Distractor, Sheet

__all__ = ["DEV_LAYOUTS", "HELD_OUT_LAYOUTS", "LAYOUTS", "SynthReport", "generate", "write_reports",
           "add_arguments", "run"]

MAX_ATTEMPTS = 25


@dataclass
class SynthReport:
    """One generated report, its truth, and what the tests need beyond the JSON (distractors)."""

    name: str
    text: str
    fields: dict[str, float | None]
    category: str
    phi: list[str]
    style: str
    layout: str
    notes: list[str]
    inconsistent_fields: list[str] = field(default_factory=list)
    distractors: list[Distractor] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fields": {k: _plain(self.fields[k]) for k in FIELD_KEYS},
            "CATEGORY": self.category,
            "phi": self.phi,
            "style": self.style,
            "notes": " ".join(self.notes),
            "layout": self.layout,
        }
        if self.inconsistent_fields:
            out["inconsistent_fields"] = self.inconsistent_fields
        return out


def _plain(value: float | None) -> float | int | None:
    """244.0 -> 244 so the JSON reads like the dev set."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def resolve_layouts(spec: str | None, held_out_only: bool = False) -> list[str]:
    """--layouts a,b | all | (default) the development layouts; --held-out-only the held-out ones."""
    if held_out_only:
        names = list(HELD_OUT_LAYOUTS)
        if spec and spec != "all":
            names = [n for n in _split(spec) if n in HELD_OUT_LAYOUTS]
            if not names:
                raise ValueError(f"none of {spec!r} is a held-out layout ({', '.join(HELD_OUT_LAYOUTS)})")
        return names
    if not spec:
        return list(DEV_LAYOUTS)
    if spec == "all":
        return list(LAYOUTS)
    names = _split(spec)
    unknown = [n for n in names if n not in LAYOUTS]
    if unknown:
        raise ValueError(f"unknown layouts {unknown}; known: {', '.join(LAYOUTS)}")
    return names


def _split(spec: str) -> list[str]:
    return [n.strip() for n in spec.split(",") if n.strip()]


def generate(n: int, seed: int, layouts: list[str] | None = None, inconsistency_rate: float = 0.0) -> list[SynthReport]:
    """``n`` reports; report i uses layout i (mod the rotation) and a category from a shuffled block."""
    names = list(layouts) if layouts else list(DEV_LAYOUTS)
    rotation = random.Random(f"synth-layouts:{seed}").sample(names, len(names))
    reports = []
    for index in range(n):
        block = random.Random(f"synth-categories:{seed}:{index // len(CATEGORIES)}").sample(CATEGORIES, len(CATEGORIES))
        category = block[index % len(CATEGORIES)]
        layout = LAYOUTS[rotation[index % len(rotation)]]
        reports.append(render_report(seed, index, layout, category, inconsistency_rate))
    return reports


def render_report(seed: int, index: int, layout: Layout, category: str, inconsistency_rate: float = 0.0) -> SynthReport:
    """Render one report; a rare distractor that equals a confusable truth causes a re-draw."""
    for attempt in range(MAX_ATTEMPTS):
        rng = random.Random(f"synth:{seed}:{index}:{attempt}")
        case = sample_case(rng, category)
        ident = sample_identity(rng, case.sex, case.age)
        style = layout.make_style(rng)
        stated = choose_stated(rng, category, rng.uniform(*layout.richness))
        values = dict(case.values)
        planted = plant_inconsistency(rng, values, stated) if rng.random() < inconsistency_rate else []
        sheet = Sheet(case, ident, values, stated, style, rng)
        text = layout.render(sheet).rstrip() + "\n"
        _check_rendering(layout.name, sheet, text)
        if any(sheet.collides(f, d.value) for d in sheet.distractors for f in d.fields):
            continue
        notes = list(sheet.notes)
        if planted:
            notes.append(f"Planted inconsistency: {', '.join(planted)} perturbed so that a physiologic relation "
                         "breaks; the printed value is still the truth.")
        return SynthReport(
            name=f"{index + 1:04d}", text=text, fields={k: sheet.truth.get(k) for k in FIELD_KEYS},
            category=category, phi=list(sheet.phi_strings), style=layout.style, layout=layout.name,
            notes=notes, inconsistent_fields=planted, distractors=list(sheet.distractors),
        )
    raise RuntimeError(f"report {index} ({layout.name}): no rendering without distractor collisions")


def _check_rendering(name: str, sheet: Sheet, text: str) -> None:
    """A layout must print every stated field and every PHI string it records (bugs, not bad luck)."""
    missing = sorted(sheet.stated - set(sheet.truth))
    if missing:
        raise AssertionError(f"layout {name} did not print stated fields {missing}")
    absent = [p for p in sheet.phi_strings if p not in text]
    if absent:
        raise AssertionError(f"layout {name} recorded PHI not in its text: {absent}")


def write_reports(reports: list[SynthReport], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for r in reports:
        (out / f"{r.name}.txt").write_text(r.text, encoding="utf-8")
        (out / f"{r.name}.json").write_text(json.dumps(r.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=20, help="number of reports (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same reports")
    parser.add_argument("--out", type=Path, required=True, help="output folder for NNNN.txt + NNNN.json")
    parser.add_argument("--inconsistency-rate", type=float, default=0.0,
                        help="share of reports with one or two values that break a physiologic relation")
    parser.add_argument("--layouts", default=None,
                        help=f"comma-separated layout names or 'all' (default: the development layouts). "
                             f"Known: {', '.join(LAYOUTS)}")
    parser.add_argument("--held-out-only", action="store_true",
                        help=f"only the held-out layouts ({', '.join(HELD_OUT_LAYOUTS)})")


def run(args: argparse.Namespace) -> int:
    if args.n < 0 or not 0.0 <= args.inconsistency_rate <= 1.0:
        print("--n must be >= 0 and --inconsistency-rate within [0, 1]")
        return 2
    try:
        names = resolve_layouts(args.layouts, args.held_out_only)
    except ValueError as exc:
        print(exc)
        return 2
    start = time.perf_counter()
    reports = generate(args.n, args.seed, names, args.inconsistency_rate)
    write_reports(reports, args.out)
    planted = sum(1 for r in reports if r.inconsistent_fields)
    print(f"wrote {len(reports)} reports to {args.out} in {time.perf_counter() - start:.1f}s "
          f"({len(names)} layouts, {planted} with planted inconsistencies)")
    return 0
