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
# (-{3,}|={3,}|_{3,}), led by a character class: Python's re then skips to those characters
_RULE_RUN = re.compile(r"[-=_](?:(?<=-)-{2,}|(?<==)={2,}|(?<=_)_{2,})")
_BLANK_RUN = re.compile(r"\n{3,}")
_REPLACEMENTS = tuple({**_SUPERSCRIPTS, **_TRANSLIT}.items())  # in the published order


def clean_text(text: str) -> str:
    """Published clean-up: ASCII only, superscripts as ^2, long '-'/'=' runs folded to one token.

    Each step runs only when it can change something (an ASCII text has nothing to transliterate;
    a text without a run of three has nothing to fold): same output, a third of the time."""
    if not text.isascii():
        for src, dst in _REPLACEMENTS:
            if src in text:
                text = text.replace(src, dst)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        text = text.encode("ascii", "ignore").decode("ascii")
    if "---" in text or "===" in text or "___" in text:
        text = _RULE_RUN.sub(lambda m: m.group(0)[0] * 3, text)
    if "\n\n\n" in text:
        text = _BLANK_RUN.sub("\n\n", text)
    return text.strip("\n")


_ZERO_COMMA = re.compile(r"^[+-]?0,\d+$")
_NUMBER = re.compile(r"^[~≈]?\s*([+-]?)(\d{1,3}(?:,\d{3})+|\d+)?(?:([.,])(\d+))?$")


def parse_number(raw: str) -> float | None:
    """'55,3' -> 55.3; '1,020' -> 1020 (thousands); '~60' -> 60; '.42' -> 0.42; junk -> None.

    A single comma followed by exactly three digits after a 1-3 digit integer part is a
    thousands separator (facts file: "1,020 ms" is one thousand and twenty); any other comma is
    a decimal comma.
    """
    s = raw.strip().replace(" ", "")
    if _ZERO_COMMA.match(s):  # '0,304' is a decimal comma (an ECV fraction), never thousands
        return float(s.replace(",", "."))
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
    # longer spellings seen in dictated reports and exports
    "mls": ("mL", 1.0), "ml/beat": ("mL", 1.0), "milliliters": ("mL", 1.0), "millilitres": ("mL", 1.0),
    "beatsperminute": ("bpm", 1.0), "beats/minute": ("bpm", 1.0), "b/min": ("bpm", 1.0), "1/min": ("bpm", 1.0),
    "kilograms": ("kg", 1.0), "kilogram": ("kg", 1.0), "kgs": ("kg", 1.0), "gr": ("g", 1.0),
    "centimeters": ("cm", 1.0), "centimetres": ("cm", 1.0), "millimeters": ("cm", 0.1), "millimetres": ("cm", 0.1),
    "meters": ("cm", 100.0), "metres": ("cm", 100.0), "meter": ("cm", 100.0), "metre": ("cm", 100.0),
    "milliseconds": ("ms", 1.0), "millisecond": ("ms", 1.0), "msecs": ("ms", 1.0),
    "seconds": ("ms", 1000.0), "second": ("ms", 1000.0), "secs": ("ms", 1000.0),
    "sqcm": ("cm^2", 1.0), "cmsq": ("cm^2", 1.0), "sqmm": ("cm^2", 0.01), "sqm": ("m^2", 1.0),
    "l/min/m2": ("L/min/m^2", 1.0), "lpm/m2": ("L/min/m^2", 1.0), "ml/m2": ("mL/m^2", 1.0),
    # UCUM spellings (coded exports, FHIR)
    "mm[hg]": ("mmHg", 1.0), "[in_i]": ("cm", 2.54), "[lb_av]": ("kg", 0.45359237), "[ft_i]": ("cm", 30.48),
    "{beats}/min": ("bpm", 1.0), "{beat}/min": ("bpm", 1.0), "ml/{beat}": ("mL", 1.0), "ml/{beats}": ("mL", 1.0),
    "1": ("%", 100.0),  # UCUM's dimensionless unit: a hematocrit or ECV written as a fraction
}

# Unit spellings as written after a number, for scanners (the rules extractor). Each either maps
# to an alias above through ``canonical_unit_key`` or is a unit of no catalog field (BMI, flows,
# velocities, doses) listed so that its number is never misread as a number in another unit.
UNIT_SPELLINGS: tuple[str, ...] = (
    "ml/m^2", "ml/m2", "cc/m^2", "cc/m2", "g/m^2", "g/m2", "gm/m^2", "gm/m2",
    "l/min/m^2", "l/min/m2", "l/m^2/min", "l/m2/min", "lpm/m2", "ml/beat", "l/min", "lpm",
    "milliliters", "millilitres", "mls", "ml", "cc", "cm^3", "cm3",
    "cm^2", "cm2", "sq. cm", "sq cm", "sqcm", "mm^2", "mm2", "sq mm", "m^2", "m2", "sq m",
    "mm hg", "mmhg", "millimeters", "millimetres", "mm", "centimeters", "centimetres", "cm",
    "meters", "metres", "meter", "metre", "inches", "inch", "in", "ft", "feet", "m",
    "milliseconds", "millisecond", "msecs", "msec", "ms", "seconds", "second", "secs", "sec", "s",
    "beats per minute", "beats/minute", "beats/min", "b/min", "bpm", "/min", "min-1", "1/min",
    "kilograms", "kilogram", "kgs", "kg", "lbs", "lb", "pounds", "grams", "gram", "gm", "g",
    "percent", "pct", "%", "l", "mm[hg]", "[in_i]", "[lb_av]", "[ft_i]", "{beats}/min", "{beat}/min",
    "ml/{beat}", "ml/{beats}",
    # no catalog field has these units
    "kg/m^2", "kg/m2", "mmol/l", "mmol/kg", "mg/kg", "ml/kg", "ml/min", "ml/s", "l/s", "cm/s", "m/s",
    "mg/dl", "g/dl", "ml/cycle", "mmol", "mcg", "mg", "ug", "ms^-1",
)
# Spellings that are also ordinary words or marks; a number followed by one of them is read as
# unitless when the unit does not fit the field ("heart rate 60 in sinus rhythm").
WEAK_UNITS: frozenset[str] = frozenset({"in", "s", "m", "l", "sec", "second", "ft", "'", '"'})


def canonical_unit_key(unit: str) -> str:
    u = unit.strip().lower().replace(" ", "").replace("^", "").replace("²", "2")
    return u.replace("sq.cm", "sqcm").rstrip(".")


_CANONICAL = {f.key: f.unit for f in CATALOG.fields}  # looked up per value; built once


def canonical_unit(unit: str) -> str | None:
    """The canonical unit a written unit converts to ('ml/m^2' -> 'mL/m^2'), None if unknown."""
    alias = _UNIT_ALIASES.get(canonical_unit_key(unit))
    return alias[0] if alias else None


def unit_alias(unit: str) -> tuple[str, float] | None:
    """(canonical unit, factor) of a written unit ('mm' -> ('cm', 0.1)), None if unknown."""
    return _UNIT_ALIASES.get(canonical_unit_key(unit))


def convert(value: float, unit: str | None, field_key: str) -> float | None:
    """Convert ``value`` written in ``unit`` to the field's canonical unit.

    No unit: the value is taken as canonical, except a fraction for a percent field
    (hematocrit 0.42 -> 42). A unit of the wrong dimension gives None (never a wrong number).
    """
    canonical = _CANONICAL.get(field_key) or CATALOG.field(field_key).unit
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
