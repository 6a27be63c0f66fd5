"""Text clean-up, number parsing and unit conversion to the catalog's canonical units.

The clean-up reproduces the published pre-processing (superscripts to ^2, runs of '-' and '='
folded, non-ASCII dropped, repeated blank lines folded) without ever dropping a measurement line.
"""

from __future__ import annotations

import re

from schemas.catalog import CATALOG

_SUPERSCRIPTS = {"²": "^2", "³": "^3", "¹": "^1"}
_TRANSLIT = {"µ": "u", "μ": "u", "–": "-", "—": "-", "−": "-", "×": "x", "·": ".", "’": "'", "‘": "'",
             "“": '"', "”": '"', "\u00a0": " ", "≥": ">=", "≤": "<=", "±": "+/-", "°": " deg"}
_RULE_RUN = re.compile(r"(-{3,}|={3,}|_{3,})")
_BLANK_RUN = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Published clean-up: ASCII only, superscripts as ^2, long '-'/'=' runs folded to one token."""
    for src, dst in {**_SUPERSCRIPTS, **_TRANSLIT}.items():
        text = text.replace(src, dst)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.encode("ascii", "ignore").decode("ascii")
    text = _RULE_RUN.sub(lambda m: m.group(0)[0] * 3, text)
    return _BLANK_RUN.sub("\n\n", text).strip("\n")


_NUMBER = re.compile(r"^[~≈]?\s*([+-]?)(\d{1,3}(?:,\d{3})+|\d+)?(?:([.,])(\d+))?$")


def parse_number(raw: str) -> float | None:
    """'55,3' -> 55.3; '1,020' -> 1020 (thousands); '~60' -> 60; '.42' -> 0.42; junk -> None.

    A single comma followed by exactly three digits after a 1-3 digit integer part is a
    thousands separator (facts file: "1,020 ms" is one thousand and twenty); any other comma is
    a decimal comma.
    """
    s = raw.strip().replace(" ", "")
    m = _NUMBER.match(s)
    if not m or (m.group(2) is None and m.group(4) is None):
        return None
    sign, integer, sep, frac = m.groups()
    integer = (integer or "0").replace(",", "")
    if sep == "," and frac is not None and len(frac) == 3 and "," not in (m.group(2) or "") and len(integer) <= 3 and integer != "0":
        value = float(integer + frac)  # '1,020' -> 1020
    else:
        value = float(f"{integer}.{frac}" if frac is not None else integer)
    return -value if sign == "-" else value


# Unit spellings -> (canonical unit, factor). Lower-cased, spaces removed, '^2'/'2' unified.
_UNIT_ALIASES: dict[str, tuple[str, float]] = {
    # lengths
    "cm": ("cm", 1.0), "mm": ("cm", 0.1), "m": ("cm", 100.0), "in": ("cm", 2.54), "inch": ("cm", 2.54),
    "inches": ("cm", 2.54), '"': ("cm", 2.54), "ft": ("cm", 30.48), "feet": ("cm", 30.48), "'": ("cm", 30.48),
    # mass
    "kg": ("kg", 1.0), "lb": ("kg", 0.45359237), "lbs": ("kg", 0.45359237), "pounds": ("kg", 0.45359237),
    "g": ("g", 1.0), "gram": ("g", 1.0), "grams": ("g", 1.0), "gm": ("g", 1.0),
    # volumes
    "ml": ("mL", 1.0), "cc": ("mL", 1.0), "cm3": ("mL", 1.0), "l": ("mL", 1000.0),
    # indexed
    "ml/m2": ("mL/m^2", 1.0), "cc/m2": ("mL/m^2", 1.0), "g/m2": ("g/m^2", 1.0), "gm/m2": ("g/m^2", 1.0),
    "l/min": ("L/min", 1.0), "lpm": ("L/min", 1.0), "l/min/m2": ("L/min/m^2", 1.0), "l/m2/min": ("L/min/m^2", 1.0),
    "m2": ("m^2", 1.0), "cm2": ("cm^2", 1.0), "sqcm": ("cm^2", 1.0), "mm2": ("cm^2", 0.01),
    # time, rate, pressure, fractions
    "ms": ("ms", 1.0), "msec": ("ms", 1.0), "s": ("ms", 1000.0), "sec": ("ms", 1000.0),
    "bpm": ("bpm", 1.0), "/min": ("bpm", 1.0), "beats/min": ("bpm", 1.0), "min-1": ("bpm", 1.0),
    "mmhg": ("mmHg", 1.0), "%": ("%", 1.0), "percent": ("%", 1.0), "pct": ("%", 1.0),
}


def canonical_unit_key(unit: str) -> str:
    u = unit.strip().lower().replace(" ", "").replace("^", "").replace("²", "2")
    return u.replace("sq.cm", "sqcm").rstrip(".")


def convert(value: float, unit: str | None, field_key: str) -> float | None:
    """Convert ``value`` written in ``unit`` to the field's canonical unit.

    No unit: the value is taken as canonical, except a fraction for a percent field
    (hematocrit 0.42 -> 42). A unit of the wrong dimension gives None (never a wrong number).
    """
    canonical = CATALOG.field(field_key).unit
    if unit is None or not unit.strip():
        if canonical == "%" and 0 < value < 1:
            return value * 100.0
        return value
    alias = _UNIT_ALIASES.get(canonical_unit_key(unit))
    if alias is None:
        return None
    target, factor = alias
    if target != canonical:
        return None
    return value * factor


def round_canonical(value: float) -> float:
    """Ground-truth convention: canonical unit, 2 decimals."""
    return round(value + 0.0, 2)
