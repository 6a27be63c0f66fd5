"""The layout registry: name -> renderer, JSON ``style`` family, unit/rounding habits, richness.

``HELD_OUT_LAYOUTS`` are kept out of the deterministic extractor's development: they measure how
it fails on report shapes it has never seen. ``DEV_LAYOUTS`` are all the others.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from ..sheet import Sheet, Style, random_style
from . import held_out, prose, tables, vendor


@dataclass(frozen=True)
class Layout:
    name: str
    style: str                                  # family name written to the JSON's ``style``
    render: Callable[[Sheet], str]
    make_style: Callable[[random.Random], Style]
    richness: tuple[float, float]               # range of the share of fields a report states


def _no_ftin(rng: random.Random) -> str:
    return rng.choice(("cm", "cm", "cm", "in", "m"))


def _vendor_style(rng: random.Random) -> Style:
    """Analysis software prints one decimal for volumes, EF and mass and never feet/inches."""
    one = {"vol": 1, "vol_idx": 1, "ef": 1, "mass": 1, "mass_idx": 1, "co": 2}
    return random_style(rng, height=_no_ftin(rng), decimals=one, pct_space=True, thousands=False)


def _plain_table_style(rng: random.Random) -> Style:
    return random_style(rng, height=_no_ftin(rng), thousands=False)


def _european_style(rng: random.Random) -> Style:
    return random_style(rng, decimal_comma=True, thousands=False, weight="kg", vol="ml", vol_idx="ml/m²",
                        mass_idx="g/m²", bsa="m²", co="l/min", ci="l/min/m²",
                        height=rng.choice(("m", "m", "cm")), length=rng.choice(("mm", "mm", "mm", "cm")),
                        area=rng.choice(("cm²", "cm²", "mm²")), hr=rng.choice(("/min", "bpm")),
                        pct_space=True, decimals={"vol": rng.choice((0, 1)), "ef": rng.choice((0, 1))})


def _typo_style(rng: random.Random) -> Style:
    return random_style(rng, vol=rng.choice(("cc", "ml")), pct=rng.choice(("percent", "%")), mass="grams",
                        thousands=False, decimals={"vol": 0, "ef": 0, "mass": 0})


def _ucum_style(rng: random.Random) -> Style:
    return random_style(rng, vol="mL", vol_idx="mL/m2", co="L/min", ci="L/min/m2", mass_idx="g/m2", bsa="m2",
                        area="cm2", hr="/min", inch_word="[in_i]", lb_word="[lb_av]", height=_no_ftin(rng),
                        decimal_comma=False, thousands=False, pct_space=True)


_LAYOUTS = (
    Layout("cvi42_normal_range", "vendor_export", vendor.cvi42_normal_range, _vendor_style, (0.45, 1.35)),
    Layout("syngo_lv_rv_columns", "vendor_export", vendor.syngo_lv_rv_columns, _vendor_style, (0.45, 1.35)),
    Layout("medis_bracket_units", "vendor_export", vendor.medis_bracket_units, _vendor_style, (0.45, 1.35)),
    Layout("suiteheart_pipes", "vendor_export", vendor.suiteheart_pipes, _plain_table_style, (0.4, 1.3)),
    Layout("ascii_box_rows", "ascii_table", tables.ascii_box_rows, _plain_table_style, (0.35, 1.3)),
    Layout("markdown_columns", "markdown_table", tables.markdown_columns, random_style, (0.35, 1.3)),
    Layout("dot_leader_lines", "label_value_lines", tables.dot_leader_lines, random_style, (0.3, 1.25)),
    Layout("key_value_export", "key_value", tables.key_value_export, _plain_table_style, (0.4, 1.3)),
    Layout("csv_export", "csv", tables.csv_export,
           lambda rng: random_style(rng, height=_no_ftin(rng), thousands=False, decimal_comma=False), (0.4, 1.3)),
    Layout("narrative_dictation", "narrative_dictation", prose.narrative_dictation, random_style, (0.1, 0.8)),
    Layout("terse_bullets", "terse_bullets", prose.terse_bullets, random_style, (0.0, 0.45)),
    Layout("allcaps_telegraph", "allcaps_telegraph", prose.allcaps_telegraph,
           lambda rng: random_style(rng, upper=True, thousands=False), (0.1, 0.6)),
    Layout("european_decimal_comma", "european_decimal_comma_mm", prose.european_decimal_comma, _european_style, (0.2, 0.85)),
    Layout("typo_dictation", "typo_dictation", prose.typo_dictation, _typo_style, (0.0, 0.3)),
    Layout("report_with_addendum", "report_with_addendum", prose.report_with_addendum, random_style, (0.3, 0.9)),
    # Held out: shapes the development layouts never show.
    Layout("transposed_field_columns", "transposed_table", held_out.transposed_field_columns,
           _plain_table_style, (0.4, 1.3)),
    Layout("semicolon_coded_export", "coded_export", held_out.semicolon_coded_export, _ucum_style, (0.4, 1.3)),
    Layout("consult_letter_prose", "free_prose_letter", held_out.consult_letter_prose,
           lambda rng: random_style(rng, thousands=False), (0.15, 0.85)),
)

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in _LAYOUTS}
HELD_OUT_LAYOUTS: tuple[str, ...] = ("transposed_field_columns", "semicolon_coded_export", "consult_letter_prose")
DEV_LAYOUTS: tuple[str, ...] = tuple(name for name in LAYOUTS if name not in HELD_OUT_LAYOUTS)
