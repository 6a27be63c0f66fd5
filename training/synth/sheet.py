"""Printing numbers into a report while recording exactly what was printed.

The truth of a report is what its text states (facts file section 7), so every field value a
layout writes goes through a ``Sheet``: it rounds the exact value the way the layout prints it,
in the unit the report's ``Style`` chose, and stores the printed number converted back to the
canonical unit and rounded to 2 decimals. Fields a layout never prints stay null. The sheet also
records planted PHI, distractor numbers (which must never equal a truth they could be confused
with) and notes for the report's JSON.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

from schemas.catalog import FIELD_KEYS

from .phi import Identity, fmt_date
from .physiology import Case, spec

LB = 0.45359237

# Canonical unit -> kind of number (kinds carry the rounding habits and unit spellings).
_KIND_BY_UNIT = {"mL": "vol", "mL/m^2": "vol_idx", "L/min": "co", "L/min/m^2": "ci", "g": "mass",
                 "g/m^2": "mass_idx", "cm": "length", "cm^2": "area", "ms": "t1", "m^2": "bsa",
                 "mmHg": "bp", "bpm": "hr", "%": "ef", "kg": "weight"}
_KIND_BY_KEY = {"HEIGHT": "height", "HCT": "hct", "ECV": "ecv"}

DEFAULT_DECIMALS = {"vol": 0, "vol_idx": 0, "co": 2, "ci": 2, "mass": 0, "mass_idx": 0, "length": 1,
                    "area": 0, "t1": 0, "bsa": 2, "bp": 0, "hr": 0, "ef": 0, "weight": 0, "height": 0,
                    "hct": 0, "ecv": 0}

_CONVERSION_NOTES = {
    "in": "Height in inches (x2.54 -> cm).",
    "ftin": "Height in feet and inches (-> cm).",
    "m": "Height in metres (x100 -> cm).",
    "lb": "Weight in lb (x0.45359237 -> kg).",
    "mm": "Diameters/wall thickness/lengths in mm (-> cm).",
    "mm2": "Atrial areas in mm^2 (/100 -> cm^2).",
    "s": "T1 times in seconds (x1000 -> ms).",
    "hct_fraction": "Hematocrit written as a fraction (0.42 -> 42).",
    "ecv_fraction": "ECV written as a fraction (-> %).",
    "comma": "European formatting: decimal commas.",
    "thousands": "T1 written with a thousands separator ('1,020 ms' is 1020).",
}


@lru_cache(maxsize=None)
def field_kind(key: str) -> str:
    """The kind of number a field is, from the catalog's canonical unit."""
    return _KIND_BY_KEY.get(key) or _KIND_BY_UNIT[spec(key).unit]


@dataclass
class Style:
    """Unit spellings, unit choices and rounding of one report."""

    vol: str = "mL"
    vol_idx: str = "mL/m²"
    co: str = "L/min"
    ci: str = "L/min/m²"
    mass: str = "g"
    mass_idx: str = "g/m²"
    bsa: str = "m²"
    area: str = "cm²"          # cm², cm2, sq cm, mm²
    length: str = "cm"         # cm | mm (diameters, wall thickness, atrial lengths)
    height: str = "cm"         # cm | m | in | ftin
    inch_word: str = "in"
    weight: str = "kg"         # kg | lb
    lb_word: str = "lb"
    t1: str = "ms"             # ms | msec | s
    hr: str = "bpm"
    pct: str = "%"             # "%" or "percent"
    hct_fraction: bool = False
    ecv_fraction: bool = False
    pct_space: bool = False    # "42 %" rather than "42%"
    decimal_comma: bool = False
    thousands: bool = False    # "1,020 ms"
    upper: bool = False        # ALL-CAPS report: PHI is recorded upper-cased
    decimals: dict[str, int] = field(default_factory=dict)


def random_style(rng: random.Random, **overrides: object) -> Style:
    """Spellings and unit choices drawn per report; a layout pins what its format dictates."""
    imperial = rng.random() < 0.2
    vol = rng.choice(("mL", "ml", "ml", "mL", "cc"))
    co = rng.choice(("L/min", "l/min", "L/min"))
    per_m2 = rng.choice(("/m²", "/m2", "/m^2"))
    st = Style(
        vol=vol,
        vol_idx=("ml" if vol == "cc" else vol) + per_m2,
        co=co,
        ci=co + per_m2,
        mass_idx="g" + per_m2,
        bsa="m" + per_m2[2:],
        area=rng.choice(("cm²", "cm2", "sq cm", "cm²", "cm^2")),
        length=rng.choice(("cm", "cm", "cm", "mm")),
        height=rng.choice(("in", "in", "ftin")) if imperial else rng.choice(("cm", "cm", "cm", "m")),
        inch_word=rng.choice(("in", "inches", "in")),
        weight="lb" if imperial else "kg",
        lb_word=rng.choice(("lb", "lbs", "pounds")),
        t1=rng.choice(("ms", "ms", "msec", "ms", "s")) if rng.random() < 0.97 else "s",
        hr=rng.choice(("bpm", "bpm", "/min", "beats/min")),
        hct_fraction=rng.random() < 0.15,
        ecv_fraction=rng.random() < 0.08,
        pct_space=rng.random() < 0.3,
        thousands=rng.random() < 0.08,
        decimals={
            "vol": rng.choice((0, 0, 1)), "vol_idx": rng.choice((0, 0, 1)), "ef": rng.choice((0, 0, 1)),
            "mass": rng.choice((0, 0, 1)), "mass_idx": rng.choice((0, 1)), "co": rng.choice((1, 2, 2)),
            "area": rng.choice((0, 1)), "weight": rng.choice((0, 1)), "hct": rng.choice((0, 1)),
            "ecv": rng.choice((0, 0, 1)),
        },
    )
    for name, value in overrides.items():
        if name == "decimals":
            st.decimals.update(value)  # type: ignore[arg-type]
        else:
            setattr(st, name, value)
    if st.decimal_comma and st.t1 == "s":
        st.t1 = "ms"  # "1,009 s" would read as one thousand and nine seconds
    return st


@dataclass(frozen=True)
class Distractor:
    """A printed number that is not a field of this study, and the fields it could be mistaken for."""

    text: str
    value: float
    fields: tuple[str, ...]
    what: str


class Sheet:
    """One report being written: exact values in, printed numbers and truth out."""

    def __init__(self, case: Case, ident: Identity, values: dict[str, float], stated: set[str],
                 style: Style, rng: random.Random) -> None:
        self.case = case
        self.ident = ident
        self.values = values
        self.stated = stated
        self.style = style
        self.rng = rng
        self.truth: dict[str, float] = {}
        self._decimals: dict[str, int] = {}
        self.phi_strings: list[str] = []
        self.notes: list[str] = []
        self.distractors: list[Distractor] = []

    # -- which fields ---------------------------------------------------------------------------
    def has(self, *keys: str) -> bool:
        return all(k in self.stated for k in keys)

    def any(self, *keys: str) -> bool:
        return any(k in self.stated for k in keys)

    def only(self, keys: Iterable[str]) -> list[str]:
        """The stated ones among ``keys``, in the given order."""
        return [k for k in keys if k in self.stated]

    def remaining(self) -> list[str]:
        """Stated fields not printed yet, in catalog order (for a layout's catch-all section)."""
        return [k for k in FIELD_KEYS if k in self.stated and k not in self.truth]

    # -- numbers --------------------------------------------------------------------------------
    def unit_info(self, key: str) -> tuple[str, float, int]:
        """(printed unit, factor printed -> canonical, decimals) for a field in this report."""
        st = self.style
        kind = field_kind(key)
        dec = st.decimals.get(kind, DEFAULT_DECIMALS[kind])
        if kind == "height":
            return {"cm": ("cm", 1.0, 0), "m": ("m", 100.0, 2), "in": (st.inch_word, 2.54, 0),
                    "ftin": ("", 2.54, 0)}[st.height]
        if kind == "weight":
            return (st.lb_word, LB, 0) if st.weight == "lb" else ("kg", 1.0, dec)
        if kind == "length":
            return ("mm", 0.1, 0) if st.length == "mm" else ("cm", 1.0, 1)
        if kind == "area":
            return ("mm²", 0.01, 0) if st.area == "mm²" else (st.area, 1.0, dec)
        if kind == "t1":
            return ("s", 1000.0, 3) if st.t1 == "s" else (st.t1, 1.0, 0)
        if kind in ("hct", "ecv"):
            if st.hct_fraction if kind == "hct" else st.ecv_fraction:
                return ("", 100.0, 2 if kind == "hct" or dec == 0 else 3)
            return (st.pct, 1.0, dec)
        unit = {"vol": st.vol, "vol_idx": st.vol_idx, "co": st.co, "ci": st.ci, "mass": st.mass,
                "mass_idx": st.mass_idx, "bsa": st.bsa, "bp": "mmHg", "hr": st.hr, "ef": st.pct}[kind]
        return unit, 1.0, dec

    def unit(self, key: str) -> str:
        return self.unit_info(key)[0]

    def num(self, key: str, dec: int | None = None) -> str:
        """The field's value as this report prints it (no unit); records the truth."""
        if key not in self.stated:
            raise KeyError(f"{key} is not stated in this report")
        unit, factor, default_dec = self.unit_info(key)
        dec = self._decimals.setdefault(key, default_dec if dec is None else dec)
        value = self.values[key]
        if key == "HEIGHT" and self.style.height == "ftin":
            inches = round(value / 2.54)
            feet, rest = divmod(inches, 12)
            text = self.rng.choice((f"{feet}'{rest}\"", f"{feet} ft {rest} in", f"{feet} ft {rest}"))
            self._record(key, round(inches * 2.54, 2), "ftin")
            return text
        text = f"{value / factor:.{dec}f}"
        self._record(key, round(float(text) * factor, 2), self._conversion(key, unit, factor))
        return self._localize(text, key)

    def val(self, key: str, dec: int | None = None) -> str:
        """Number and unit: '244 mL', '42%', '0.42', '5 ft 9 in'."""
        text = self.num(key, dec)
        unit = self.unit(key)
        if not unit:
            return text
        if unit == "%" and not self.style.pct_space:
            return text + "%"
        return f"{text} {unit}"

    def pair(self, key: str, index_key: str | None = None, fmt: str = "{a} ({i})") -> str:
        """'244 mL (120 mL/m²)' when both are stated, else whichever is; '' when neither."""
        index_key = index_key or f"{key}I"
        a = self.val(key) if self.has(key) else ""
        i = self.val(index_key) if self.has(index_key) else ""
        if a and i:
            self.note("Absolute and indexed values share a line, e.g. 'X ml (Y ml/m2)'.")
            return fmt.format(a=a, i=i)
        return a or i

    def bp(self, sep: str = "/") -> str:
        return f"{self.num('SBP')}{sep}{self.num('DBP')} mmHg"

    def _record(self, key: str, truth: float, conversion: str | None) -> None:
        previous = self.truth.get(key)
        if previous is not None and previous != truth:
            raise ValueError(f"{key} printed twice with different values ({previous} vs {truth})")
        self.truth[key] = truth
        if conversion:
            self.note(_CONVERSION_NOTES[conversion])

    def _conversion(self, key: str, unit: str, factor: float) -> str | None:
        if factor == 1.0:
            return None
        kind = field_kind(key)
        if kind == "height":
            return "m" if unit == "m" else "in"
        return {"weight": "lb", "length": "mm", "area": "mm2", "t1": "s",
                "hct": "hct_fraction", "ecv": "ecv_fraction"}[kind]

    def _localize(self, text: str, key: str | None = None) -> str:
        if self.style.decimal_comma and "." in text:
            self.note(_CONVERSION_NOTES["comma"])
            return text.replace(".", ",")
        if (self.style.thousands and key and field_kind(key) == "t1" and "." not in text
                and len(text) >= 4 and not self.style.decimal_comma):
            self.note(_CONVERSION_NOTES["thousands"])
            return f"{text[:-3]},{text[-3:]}"
        return text

    def fmt(self, x: float, dec: int = 0) -> str:
        """A number that is not a field, localized (decimal comma) but not recorded."""
        return self._localize(f"{x:.{dec}f}")

    # -- distractors ----------------------------------------------------------------------------
    def distract(self, x: float, dec: int, fields: tuple[str, ...], what: str, factor: float = 1.0) -> str:
        """Print a non-field number; ``factor`` converts it to the confusable fields' unit.

        A distractor that would equal the truth of a field it could be mistaken for is nudged by
        one last digit until it does not, so a wrong extraction is always detectably wrong."""
        step = 10.0 ** -dec
        for _ in range(100):
            value = round(float(f"{x:.{dec}f}") * factor, 2)
            if not any(self.collides(f, value) for f in fields):
                break
            x += step
        text = self.fmt(x, dec)
        self.distractors.append(Distractor(text, value, fields, what))
        self.note(what)
        return text

    def expected(self, key: str) -> float:
        """The truth ``num`` records (or recorded) for a stated field."""
        if key in self.truth:
            return self.truth[key]
        unit, factor, dec = self.unit_info(key)
        if key == "HEIGHT" and self.style.height == "ftin":
            return round(round(self.values[key] / 2.54) * 2.54, 2)
        dec = self._decimals.get(key, dec)
        return round(float(f"{self.values[key] / factor:.{dec}f}") * factor, 2)

    def collides(self, key: str, value: float) -> bool:
        """Would ``value`` count as a correct extraction of the stated field ``key``?"""
        if key not in self.stated:
            return False
        truth = self.expected(key)
        return abs(value - truth) <= max(0.01, 0.005 * abs(truth))

    def ref_range(self, key: str, sep: str = " - ") -> str:
        """Normal range for the patient's sex (mu +/- 2 sigma) in the printed unit; '' if none."""
        ref = spec(key).reference
        unit, factor, dec = self.unit_info(key)
        if ref is None or (factor != 1.0 and field_kind(key) != "length"):
            return ""
        mu, sigma = getattr(ref, self.case.sex)
        dec = min(dec, 1) if field_kind(key) in ("co", "ci", "length") else 0
        lo = self.distract(max(mu - 2 * sigma, 0.0) / factor, dec, (key,), "", factor)
        hi = self.distract((mu + 2 * sigma) / factor, dec, (key,), "", factor)
        self.note("Normal/reference ranges printed next to values are not extracted.")
        return f"{lo}{sep}{hi}"

    def prior(self, key: str) -> str:
        """A prior study's value of a field (a distractor), printed like the current one."""
        unit, factor, dec = self.unit_info(key)
        scale = self.case.extras["prior_scale"]
        x = self.case.extras["prior_lvef"] if key == "LVEF" else self.values[key] * scale
        self.note("Prior-study values are distractors, not the current study.")
        return self.distract(x / factor, dec, (key,), "", factor)

    # -- identity and notes ---------------------------------------------------------------------
    def phi(self, text: str) -> str:
        """Plant an identifying string; it is listed in the report's ``phi``."""
        if self.style.upper:
            text = text.upper()
        if text not in self.phi_strings:
            self.phi_strings.append(text)
        return text

    def date(self, which: str, style: str) -> str:
        return self.phi(fmt_date(getattr(self.ident, which), style))

    def note(self, text: str) -> None:
        if text and text not in self.notes:
            self.notes.append(text)

    def pick(self, options: Iterable[str]) -> str:
        return self.rng.choice(tuple(options))
