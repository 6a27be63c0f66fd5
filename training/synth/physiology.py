"""Patient and disease physiology: one consistent set of exact values per synthetic report.

Only a few quantities are drawn per disease (indexed EDV, EF, mass index, atrial indices, ECV,
wall thickness ...). Everything else is derived with the formulas the consistency score checks
(Mosteller BSA, ESV = EDV * (1 - EF), SV = EDV - ESV, CO = SV * HR / 1000, X = XI * BSA, the ECV
formula solved for post-contrast myocardial T1), so the 22 relations hold exactly until the
report rounds each number it prints.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from schemas.catalog import CATALOG, CATEGORIES, FIELD_KEYS, FieldSpec

# Fields X whose index XI is also a field: the 12 "BSA = X / XI" relations.
INDEXED: tuple[str, ...] = tuple(k for k in FIELD_KEYS if f"{k}I" in FIELD_KEYS)
SIDES = ("LV", "RV")

# Operands of the 22 relations (facts file section 4); used to pick values whose perturbation
# breaks a relation the report lets a reader check.
RELATION_FIELDS: tuple[tuple[str, ...], ...] = (
    (("BSA", "HEIGHT", "WEIGHT"),)
    + tuple((f"{s}EF", f"{s}EDV", f"{s}ESV") for s in SIDES)
    + tuple((f"{s}SV", f"{s}EDV", f"{s}ESV") for s in SIDES)
    + tuple((f"{s}CO", f"{s}SV", "BHR") for s in SIDES)
    + tuple((f"{s}EF", f"{s}SV", f"{s}EDV") for s in SIDES)
    + tuple(("BSA", x, f"{x}I") for x in INDEXED)
    + (("ECV", "HCT", "POSTT1M", "PRET1M", "POSTT1B", "PRET1B"),)
)

MALE_SHARE = {"CAD": 0.75, "HCM": 0.6, "DCM": 0.65, "Ebstein": 0.45, "PAH": 0.3}
AGES = {"CAD": (45, 84), "HCM": (16, 75), "DCM": (22, 78), "Ebstein": (14, 60), "PAH": (22, 76)}

# Per disease: (low, high, mode) of the few drawn quantities (indices per m^2, EF in %, cm, ms).
PROFILES: dict[str, dict[str, tuple[float, float, float]]] = {
    "CAD": dict(LVEDVI=(75, 145, 100), LVEF=(20, 52, 38), LVMASSI=(50, 88, 64), RVEDVI=(58, 100, 78),
                RVEF=(40, 66, 55), RVMASSI=(13, 24, 18), LAVI=(30, 62, 42), RAVI=(24, 46, 33),
                ECV=(24, 33, 27), T1=(960, 1050, 1000), LVAWT=(0.55, 1.2, 0.85), LVIWT=(0.5, 1.1, 0.8),
                HR=(52, 88, 68)),
    "HCM": dict(LVEDVI=(52, 92, 70), LVEF=(62, 84, 72), LVMASSI=(75, 165, 105), RVEDVI=(55, 92, 72),
                RVEF=(55, 74, 63), RVMASSI=(15, 28, 20), LAVI=(40, 88, 55), RAVI=(24, 46, 32),
                ECV=(27, 43, 32), T1=(1000, 1110, 1045), LVAWT=(1.5, 3.3, 2.1), LVIWT=(0.8, 1.5, 1.1),
                HR=(48, 78, 60)),
    "DCM": dict(LVEDVI=(110, 235, 150), LVEF=(10, 40, 25), LVMASSI=(60, 112, 80), RVEDVI=(62, 135, 90),
                RVEF=(24, 58, 45), RVMASSI=(13, 26, 18), LAVI=(40, 88, 55), RAVI=(28, 62, 40),
                ECV=(26, 38, 31), T1=(1000, 1100, 1050), LVAWT=(0.5, 0.95, 0.7), LVIWT=(0.45, 0.9, 0.65),
                HR=(60, 105, 80)),
    "Ebstein": dict(LVEDVI=(38, 70, 52), LVEF=(52, 69, 60), LVMASSI=(36, 60, 46), RVEDVI=(100, 240, 145),
                    RVEF=(26, 52, 40), RVMASSI=(10, 22, 15), LAVI=(20, 38, 28), RAVI=(70, 220, 120),
                    ECV=(22, 31, 26), T1=(960, 1040, 1000), LVAWT=(0.6, 0.95, 0.75), LVIWT=(0.5, 0.85, 0.65),
                    HR=(58, 96, 75)),
    "PAH": dict(LVEDVI=(36, 70, 52), LVEF=(50, 71, 60), LVMASSI=(38, 66, 50), RVEDVI=(95, 205, 140),
                RVEF=(14, 46, 30), RVMASSI=(28, 66, 42), LAVI=(17, 36, 25), RAVI=(45, 125, 75),
                ECV=(25, 35, 29), T1=(1000, 1090, 1040), LVAWT=(0.6, 1.05, 0.8), LVIWT=(0.5, 0.9, 0.7),
                HR=(64, 102, 82)),
}


@dataclass
class Case:
    """One patient: exact canonical values for every field plus the non-field numbers prose needs."""

    category: str
    sex: str
    age: int
    tesla: float
    values: dict[str, float]
    extras: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=None)
def spec(key: str) -> FieldSpec:
    """The catalog entry of a field (cached: the catalog rebuilds its index on every lookup)."""
    return CATALOG.field(key)


@lru_cache(maxsize=None)
def measure(key: str) -> str:
    """'LVEDVI' -> 'EDVI', 'RAA4CH' -> 'A4CH', 'HEIGHT' -> 'HEIGHT' (chamber prefix removed)."""
    side = spec(key).side
    return key[len(side):] if side else key


def _tri(rng: random.Random, spec: tuple[float, float, float]) -> float:
    return rng.triangular(*spec)


def _clip(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


def sample_case(rng: random.Random, category: str) -> Case:
    """Draw a patient with the disease's physiology; every derived value follows the relations."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    prof = PROFILES[category]
    male = rng.random() < MALE_SHARE[category]
    sex = "male" if male else "female"
    age = rng.randint(*AGES[category])
    v: dict[str, float] = {}

    height = _clip(rng.gauss(177 if male else 163, 7 if male else 6.5), 147, 203)
    bmi = _clip(rng.gauss(28 if category == "CAD" else 25.5, 4), 17.5, 42)
    weight = bmi * (height / 100) ** 2
    bsa = math.sqrt(height * weight / 3600)
    hr = _tri(rng, prof["HR"])
    sbp = _clip(rng.gauss(112 if category in ("DCM", "PAH") else 130, 14), 88, 185)
    dbp = _clip(sbp * rng.uniform(0.52, 0.66), 48, 105)
    v.update(HEIGHT=height, WEIGHT=weight, BSA=bsa, BHR=hr, SBP=sbp, DBP=dbp)

    female_vol, female_mass = (1.0, 1.0) if male else (0.9, 0.82)
    for side in SIDES:
        edvi = _tri(rng, prof[f"{side}EDVI"]) * female_vol
        ef = _tri(rng, prof[f"{side}EF"])
        # Keep stroke volume and cardiac index physiologic (SVI 16-60 mL/m^2, CI at most ~4 L/min/m^2).
        svi = _clip(edvi * ef / 100, rng.uniform(16, 22), min(rng.uniform(48, 60), rng.uniform(3.6, 4.4) * 1000 / hr))
        ef = svi / edvi * 100
        v[f"{side}EDV"] = edvi * bsa
        v[f"{side}EF"] = ef
        v[f"{side}ESV"] = v[f"{side}EDV"] * (1 - ef / 100)
        v[f"{side}SV"] = v[f"{side}EDV"] - v[f"{side}ESV"]
        v[f"{side}CO"] = v[f"{side}SV"] * hr / 1000
        v[f"{side}MASS"] = _tri(rng, prof[f"{side}MASSI"]) * female_mass * bsa

    # Linear dimensions scale with the cube root of volume (calibrated on the SCMR normal means).
    cavity = 0.85 if category == "HCM" else 1.0
    v["LVEDD"] = v["LVEDV"] ** (1 / 3) * rng.uniform(0.94, 1.04) * cavity
    v["LVESD"] = min(v["LVESV"] ** (1 / 3) * rng.uniform(0.88, 0.97) * cavity, v["LVEDD"] - 0.25)
    v["RVEDD"] = v["RVEDV"] ** (1 / 3) * rng.uniform(0.76, 0.86)
    v["RVESD"] = min(v["RVESV"] ** (1 / 3) * rng.uniform(0.74, 0.84), v["RVEDD"] - 0.2)
    wall = 1.0 if male else 0.85
    v["LVAWT"] = _tri(rng, prof["LVAWT"]) * (wall if category != "HCM" else 1.0)
    v["LVIWT"] = min(_tri(rng, prof["LVIWT"]) * wall, v["LVAWT"] * rng.uniform(0.75, 1.15))

    for atrium, scale in (("LA", 1.0), ("RA", 1.0)):
        vol = _tri(rng, prof[f"{atrium}VI"]) * female_vol * bsa * scale
        v[f"{atrium}V"] = vol
        v[f"{atrium}A4CH"] = 1.3 * vol ** (2 / 3) * rng.uniform(0.9, 1.1)
        v[f"{atrium}A2CH"] = (1.25 if atrium == "LA" else 1.4) * vol ** (2 / 3) * rng.uniform(0.9, 1.1)
        v[f"{atrium}L4CH"] = (1.42 if atrium == "LA" else 1.3) * vol ** (1 / 3) * rng.uniform(0.93, 1.07)
        v[f"{atrium}L2CH"] = (1.22 if atrium == "LA" else 1.37) * vol ** (1 / 3) * rng.uniform(0.93, 1.07)

    for key in INDEXED:
        v[f"{key}I"] = v[key] / bsa

    # T1 mapping: draw native T1s, blood T1 after contrast, HCT and the target ECV, then solve the
    # ECV formula for post-contrast myocardial T1 so that relation 22 holds exactly.
    tesla = 3.0 if rng.random() < 0.25 else 1.5
    shift = 190 if tesla == 3.0 else 0
    v["PRET1M"] = _tri(rng, prof["T1"]) + shift
    v["PRET1B"] = rng.uniform(1480, 1700) + shift * 1.2
    v["POSTT1B"] = rng.uniform(230, 360)
    v["HCT"] = _clip(rng.gauss(44 if male else 40, 3), 30, 54)
    v["ECV"] = _tri(rng, prof["ECV"])
    inv_post_m = v["ECV"] / (100 - v["HCT"]) * (1 / v["POSTT1B"] - 1 / v["PRET1B"]) + 1 / v["PRET1M"]
    v["POSTT1M"] = 1 / inv_post_m

    missing = set(FIELD_KEYS) - set(v)
    if missing:
        raise AssertionError(f"physiology leaves fields unset: {sorted(missing)}")
    return Case(category, sex, age, tesla, {k: v[k] for k in FIELD_KEYS}, _extras(rng, category, v))


def _extras(rng: random.Random, category: str, v: dict[str, float]) -> dict[str, Any]:
    """Numbers that are not fields: distractors for prose (gradients, flows, priors, stress values)."""
    x: dict[str, Any] = {
        "territory": rng.choice(("LAD", "RCA", "LCx")),
        "prior_lvef": _clip(v["LVEF"] + rng.choice((-1, 1)) * rng.uniform(4, 12), 8, 80),
        "prior_scale": 1 + rng.choice((-1, 1)) * rng.uniform(0.05, 0.14),
        "stress_hr": v["BHR"] + rng.uniform(18, 42),
        "stress_sbp": v["SBP"] + rng.choice((-1, 1)) * rng.uniform(8, 24),
        "stress_dbp": v["DBP"] - rng.uniform(5, 14),
        "lvot_gradient": rng.uniform(18, 110),
        "lge_pct": rng.uniform(3, 26),
        "mr_rf": rng.uniform(12, 42),
        "tr_rf": rng.uniform(25, 62) if category == "Ebstein" else rng.uniform(12, 40),
        "leaflet_mm": rng.uniform(15, 45),
        "atrialized_ml": rng.uniform(15, 75),
        "qpqs": rng.uniform(1.1, 1.9),
        "mpa_mm": rng.uniform(30, 46) if category == "PAH" else rng.uniform(20, 29),
        "rvsp": rng.uniform(55, 115),
        "mpap": rng.uniform(30, 66),
        "pvr": rng.uniform(4, 14),
        "ao_flow": v["LVSV"] * rng.uniform(0.86, 0.96),
        "pa_flow": v["RVSV"] * rng.uniform(0.86, 0.96),
    }
    return x


def _probability(key: str, category: str, r: float) -> float:
    """How likely a report states a field: richer reports state more; each disease has its focus."""
    side = spec(key).side
    m = measure(key)
    right = side in ("RV", "RA")
    focus_right = category in ("Ebstein", "PAH")
    base: dict[str, float] = {
        "HEIGHT": 0.25 + 0.65 * r, "WEIGHT": 0.25 + 0.65 * r, "BSA": 0.35 + 0.6 * r, "BHR": 0.45 + 0.5 * r,
        "SBP": 0.2 + 0.55 * r, "DBP": 0.2 + 0.55 * r,
        "EDV": 0.9, "EF": 0.95, "ESV": 0.25 + 0.65 * r, "SV": 0.2 + 0.65 * r, "MASS": 0.35 + 0.55 * r,
        "CO": 0.1 + 0.65 * r, "COI": 0.08 + 0.6 * r, "EDVI": 0.2 + 0.7 * r, "ESVI": 0.1 + 0.7 * r,
        "SVI": 0.1 + 0.65 * r, "MASSI": 0.15 + 0.7 * r,
        "EDD": 0.1 + 0.6 * r, "ESD": 0.08 + 0.55 * r, "AWT": 0.1 + 0.6 * r, "IWT": 0.1 + 0.6 * r,
        "V": 0.25 + 0.55 * r, "VI": 0.1 + 0.6 * r,
        "A2CH": 0.03 + 0.5 * r, "A4CH": 0.05 + 0.55 * r, "L2CH": 0.03 + 0.5 * r, "L4CH": 0.05 + 0.55 * r,
        "PRET1M": 0.15 + 0.6 * r, "ECV": 0.15 + 0.6 * r, "HCT": 0.05 + 0.55 * r,
        "PRET1B": 0.02 + 0.55 * r, "POSTT1M": 0.02 + 0.55 * r, "POSTT1B": 0.02 + 0.55 * r,
    }
    p = base[m]
    if right:
        if focus_right:
            p = max(p, 0.9) if m in ("EDV", "EF", "V") else min(1.0, p * 1.3 + 0.1)
        elif m in ("EDV", "EF"):
            p = 0.55 + 0.4 * r
        else:
            p *= 0.6 if m in ("MASS", "MASSI", "EDD", "ESD", "A2CH", "L2CH") else 0.85
    if category == "HCM" and m in ("AWT", "IWT", "MASS") and side == "LV":
        p = 0.85 + 0.1 * r
    if category == "DCM" and m in ("EDD", "ESD") and side == "LV":
        p += 0.3
    if category == "PAH" and key in ("RVMASS", "RVMASSI"):
        p += 0.3
    return min(p, 0.98)


def choose_stated(rng: random.Random, category: str, richness: float,
                  min_fields: int = 8, max_fields: int = 50) -> set[str]:
    """The fields one report states: sparse (about 8) to rich (about 50), disease-focused."""
    p = {k: _probability(k, category, richness) for k in FIELD_KEYS}
    stated = {k for k in FIELD_KEYS if rng.random() < p[k]}
    stated.discard("DBP")
    if "SBP" in stated:
        stated.add("DBP")  # a blood pressure is written as a pair
    if ("HEIGHT" in stated) != ("WEIGHT" in stated) and rng.random() < 0.85:
        stated |= {"HEIGHT", "WEIGHT"}
    ranked = sorted((k for k in FIELD_KEYS if k not in stated and k not in ("SBP", "DBP")),
                    key=lambda k: -p[k] + rng.random() * 0.2)
    while len(stated) < min_fields and ranked:
        stated.add(ranked.pop(0))
    while len(stated) > max_fields:
        stated.discard(rng.choice(sorted(stated - {"SBP", "DBP"})))
    return stated


def plant_inconsistency(rng: random.Random, values: dict[str, float], stated: set[str]) -> list[str]:
    """Perturb one or two stated values by 20-35% so that a relation the report lets a reader
    check breaks; two picks never share a relation, so each break is visible on its own."""
    evaluable = [rel for rel in RELATION_FIELDS if stated.issuperset(rel)]
    # Native blood T1 moves ECV too little to break relation 22 beyond rounding; leave it alone.
    candidates = sorted({k for rel in evaluable for k in rel} - {"PRET1B"})
    if not candidates:
        return []
    picked: list[str] = []
    for _ in range(rng.choice((1, 1, 2))):
        free = [k for k in candidates
                if not any(k in rel and p in rel for rel in evaluable for p in picked) and k not in picked]
        if not free:
            break
        picked.append(rng.choice(free))
    for key in picked:
        lo, hi = spec(key).plausible
        change = rng.uniform(0.2, 0.35) * rng.choice((-1, 1))
        new = values[key] * (1 + change)
        if not lo <= new <= hi or (key.endswith("EF") and new > 90):
            new = values[key] * (1 - change)
        values[key] = new
    return picked
