"""What every layout shares: field groups from the catalog, labels, header and sign-off blocks."""

from __future__ import annotations

from schemas.catalog import FIELD_KEYS

from ..physiology import measure, spec
from ..sheet import Sheet

# Field groups, derived from the catalog (side and unit), in a reading order reports use.
VENTRICLE_MEASURES = ("EDV", "EDVI", "ESV", "ESVI", "SV", "SVI", "EF", "CO", "COI", "MASS", "MASSI")
DIMENSION_MEASURES = ("EDD", "ESD", "AWT", "IWT")
ATRIUM_MEASURES = ("V", "VI", "A2CH", "A4CH", "L2CH", "L4CH")
BODY = tuple(k for k in FIELD_KEYS if spec(k).side is None and spec(k).unit not in ("ms", "%"))
TISSUE = tuple(k for k in FIELD_KEYS if spec(k).side is None and spec(k).unit in ("ms", "%"))


def keys_for(side: str, measures: tuple[str, ...]) -> list[str]:
    return [f"{side}{m}" for m in measures if f"{side}{m}" in FIELD_KEYS]


def ventricle(side: str) -> list[str]:
    return keys_for(side, VENTRICLE_MEASURES)


def dimensions(side: str) -> list[str]:
    return keys_for(side, DIMENSION_MEASURES)


def atrium(side: str) -> list[str]:
    return keys_for(side, ATRIUM_MEASURES)


SIDE_LONG = {"LV": "Left ventricular", "RV": "Right ventricular", "LA": "Left atrial", "RA": "Right atrial"}
SIDE_NOUN = {"LV": "left ventricle", "RV": "right ventricle", "LA": "left atrium", "RA": "right atrium"}

MEASURE_LONG = {
    "EDV": "end-diastolic volume", "ESV": "end-systolic volume", "SV": "stroke volume",
    "EF": "ejection fraction", "CO": "cardiac output", "MASS": "mass", "EDVI": "end-diastolic volume index",
    "ESVI": "end-systolic volume index", "SVI": "stroke volume index", "COI": "cardiac index",
    "MASSI": "mass index", "EDD": "end-diastolic diameter", "ESD": "end-systolic diameter",
    "AWT": "anteroseptal wall thickness", "IWT": "inferolateral wall thickness", "V": "volume",
    "VI": "volume index", "A2CH": "area (2-chamber)", "A4CH": "area (4-chamber)",
    "L2CH": "length (2-chamber)", "L4CH": "length (4-chamber)",
}
# Three short spellings per measure (vendor-like, abbreviation, "/BSA").
MEASURE_SHORT = {
    "EDV": ("EDV", "EDV", "EDV"), "ESV": ("ESV", "ESV", "ESV"), "SV": ("SV", "SV", "SV"),
    "EF": ("EF", "EF", "EF"), "CO": ("CO", "CO", "CO"), "MASS": ("Mass", "Mass", "Myo mass"),
    "EDVI": ("EDV index", "EDVi", "EDV/BSA"), "ESVI": ("ESV index", "ESVi", "ESV/BSA"),
    "SVI": ("SV index", "SVi", "SV/BSA"), "COI": ("CI", "CI", "CO/BSA"),
    "MASSI": ("Mass index", "Mi", "Mass/BSA"), "EDD": ("EDD", "EDD", "EDD"), "ESD": ("ESD", "ESD", "ESD"),
    "AWT": ("anteroseptal WT", "WT septal", "Wall th. anteroseptal"),
    "IWT": ("inferolateral WT", "WT lateral", "Wall th. inferolateral"),
    "V": ("volume", "vol", "volume"), "VI": ("volume index", "vol i", "volume/BSA"),
    "A2CH": ("area 2CH", "area 2C", "area 2-ch"), "A4CH": ("area 4CH", "area 4C", "area 4-ch"),
    "L2CH": ("length 2CH", "length 2C", "length 2-ch"), "L4CH": ("length 4CH", "length 4C", "length 4-ch"),
}
OTHER_LONG = {
    "HEIGHT": "Height", "WEIGHT": "Weight", "BSA": "Body surface area", "SBP": "Systolic blood pressure",
    "DBP": "Diastolic blood pressure", "BHR": "Heart rate", "PRET1M": "Native T1 myocardium",
    "PRET1B": "Native T1 blood pool", "POSTT1M": "Post-contrast T1 myocardium",
    "POSTT1B": "Post-contrast T1 blood pool", "HCT": "Hematocrit", "ECV": "Extracellular volume (ECV)",
}
OTHER_SHORT = {
    "HEIGHT": "Ht", "WEIGHT": "Wt", "BSA": "BSA", "SBP": "SBP", "DBP": "DBP", "BHR": "HR",
    "PRET1M": "T1 myo native", "PRET1B": "T1 blood native", "POSTT1M": "T1 myo post",
    "POSTT1B": "T1 blood post", "HCT": "Hct", "ECV": "ECV",
}


def long_label(key: str, formal: bool = False) -> str:
    """'LV end-diastolic volume' or, formal, 'Left ventricular end-diastolic volume'."""
    side = spec(key).side
    if side is None:
        return OTHER_LONG[key]
    m = measure(key)
    words = MEASURE_LONG[m]
    if m in ("AWT", "IWT"):
        return words[0].upper() + words[1:] if not formal else f"LV {words}"
    return f"{SIDE_LONG[side] if formal else side} {words}"


def short_label(key: str, variant: int = 0) -> str:
    """'LV EDV index' / 'LV EDVi' / 'LV EDV/BSA'; 'Ht', 'T1 myo native' for the others."""
    side = spec(key).side
    if side is None:
        return OTHER_SHORT[key]
    return f"{side} {MEASURE_SHORT[measure(key)][variant % 3]}"


def abbrev(key: str) -> str:
    """Run-together abbreviation: 'LVEDV', 'LVEDVi', 'LVCI', 'LVMi', 'RAA4C', 'LVAWT'."""
    side = spec(key).side
    if side is None:
        return {"BHR": "HR", "PRET1M": "T1n", "PRET1B": "T1n blood", "POSTT1M": "T1post",
                "POSTT1B": "T1post blood", "HCT": "Hct"}.get(key, key)
    m = measure(key)
    special = {"COI": "CI", "MASSI": "Mi", "MASS": "M", "EDVI": "EDVi", "ESVI": "ESVi", "SVI": "SVi",
               "V": "V", "VI": "Vi", "A2CH": "A2C", "A4CH": "A4C", "L2CH": "L2C", "L4CH": "L4C"}
    return side + special.get(m, m)


def hospital(s: Sheet) -> str:
    return s.pick((
        "Mercy Ridge Medical Center", "Northvale University Hospital", "St. Aldric Heart Institute",
        "Harborview Cardiac Imaging Associates", "Pine Hollow Community Hospital", "Lakeshore Cardiovascular Center",
        "Royal Eastbourne Infirmary", "Cedar Valley Heart & Vascular", "Wexley General Hospital",
        "Kingsbridge Regional Medical Centre", "Tamarind Bay Hospital", "Ostholm University Clinic",
    ))


def sex_letter(s: Sheet) -> str:
    return "M" if s.case.sex == "male" else "F"


def header(s: Sheet, date_style: str, keyword_share: float = 0.6) -> list[str]:
    """Patient header; each item on a keyword line (Name, MRN, DOB, Date ...) or, otherwise, on
    a line the keyword filter misses ('Patient: J. Smith', 'Acc# 8812734', 'Exam performed ...')."""
    i, p = s.ident, s.ident.patient
    kw = lambda: s.rng.random() < keyword_share  # noqa: E731
    lines: list[str] = []
    if kw():
        lines.append(s.pick(("Patient Name: {}", "NAME: {}", "Name: {}")).format(s.phi(s.pick((p.last_first, p.full)))))
    else:
        lines.append(s.pick(("Patient: {}", "Pt: {}", "Patient {}")).format(s.phi(s.pick((p.full, p.initial_last, p.last_first)))))
    if kw():
        lines.append(f"MRN: {s.phi(i.mrn)}    DOB: {s.date('dob', date_style)}")
    else:
        lines.append(f"{s.pick(('MR#', 'Hosp. no.', 'Patient ID', 'Record no.'))}: {s.phi(i.mrn)}    born {s.date('dob', date_style)}")
    if kw():
        lines.append(f"{s.pick(('Date of study', 'Exam Date', 'DATE OF SERVICE'))}: {s.date('study', date_style)}    "
                     f"{s.pick(('Account', 'Account #'))}: {s.phi(i.account)}")
    else:
        lines.append(f"Exam performed {s.date('study', date_style)} at {i.study_time}.  Acc# {s.phi(i.accession)}")
    if kw():
        lines.append(f"Referring Physician: {s.phi(i.referrer.full)}, MD")
    else:
        lines.append(f"Referred by Dr. {s.phi(i.referrer.initial_last)}.")
    if s.rng.random() < 0.5:
        lines.append(f"Technologist: {s.phi(i.technologist.full)}" if kw() else f"Scanned by {s.phi(i.technologist.full)} (RT)")
    if s.rng.random() < 0.3:
        lines.append(f"Nurse: {s.phi(i.nurse.full)}, RN" if kw() else f"IV access: {s.phi(i.nurse.full)}, RN")
    if s.rng.random() < 0.2:
        lines.append(f"Pt address: {s.phi(i.address)}   Home phone: {s.phi(i.phone)}")
    return lines


def signoff(s: Sheet, date_style: str) -> list[str]:
    """Sign-off lines: signatures, dates, a telephone call with a phone number."""
    i = s.ident
    lines: list[str] = []
    if s.rng.random() < 0.3:
        lines.append(f"Findings discussed with Dr. {s.phi(i.referrer.full)} by telephone at {s.phi(i.phone)} "
                     f"on {s.date('signed', date_style)}.")
    template = s.pick((
        "Electronically signed: {r}, MD  {d} {t}", "Dictated by: {r}, MD\nSigned {d}", "-- {r}",
        "Reported by {r} (Level 3 CMR), {d}", "Reporting consultant: Dr {r}   Verified {d}",
    ))
    date = s.date("signed", date_style) if "{d}" in template else ""
    lines.append(template.format(r=s.phi(i.reader.full), d=date, t=i.study_time))
    return lines
