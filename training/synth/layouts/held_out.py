"""The three HELD-OUT layouts, kept out of the deterministic extractor's development.

Each differs in shape from everything the development layouts show: a transposed trend table
(fields as columns, studies as rows, with a prior-study row), a semicolon-separated export with
coded labels and UCUM units, and a consultation letter whose prose never uses the usual labels.
"""

from __future__ import annotations

from .. import clinical
from ..physiology import measure, spec
from ..sheet import Sheet
from .common import BODY, TISSUE, atrium, dimensions, hospital, long_label, ventricle

_SIDE_CODE = {"LV": "VEN.L", "RV": "VEN.R", "LA": "ATR.L", "RA": "ATR.R"}
_MEASURE_CODE = {
    "EDV": "VOL.ED", "ESV": "VOL.ES", "SV": "VOL.STR", "EF": "FRC.EJ", "CO": "FLW.CO", "MASS": "MAS.MYO",
    "EDVI": "VOL.ED.IDX", "ESVI": "VOL.ES.IDX", "SVI": "VOL.STR.IDX", "COI": "FLW.CO.IDX",
    "MASSI": "MAS.MYO.IDX", "EDD": "DIA.ED", "ESD": "DIA.ES", "AWT": "WTH.ASEP", "IWT": "WTH.ILAT",
    "V": "VOL.MAX", "VI": "VOL.MAX.IDX", "A2CH": "ARE.2C", "A4CH": "ARE.4C", "L2CH": "LEN.2C", "L4CH": "LEN.4C",
}
_OTHER_CODE = {"HEIGHT": "BDY.HT", "WEIGHT": "BDY.WT", "BSA": "BDY.BSA", "SBP": "VIT.BP.SYS",
               "DBP": "VIT.BP.DIA", "BHR": "VIT.HR", "PRET1M": "T1.MYO.PRE", "PRET1B": "T1.BLD.PRE",
               "POSTT1M": "T1.MYO.PST", "POSTT1B": "T1.BLD.PST", "HCT": "LAB.HCT", "ECV": "TIS.ECV"}


def code(key: str) -> str:
    side = spec(key).side
    return f"{_SIDE_CODE[side]}.{_MEASURE_CODE[measure(key)]}" if side else _OTHER_CODE[key]


def _column_label(key: str) -> str:
    """'LV-EDV', 'LV-EDVi', 'RA-A4C', 'T1-myo-pre': terse hyphenated column headers."""
    side = spec(key).side
    if side is None:
        return {"HEIGHT": "Height", "WEIGHT": "Weight", "BHR": "HR", "PRET1M": "T1-myo-pre",
                "PRET1B": "T1-bld-pre", "POSTT1M": "T1-myo-post", "POSTT1B": "T1-bld-post"}.get(key, key)
    m = measure(key)
    m = {"EDVI": "EDVi", "ESVI": "ESVi", "SVI": "SVi", "COI": "CI", "MASSI": "Mi", "MASS": "Mass", "V": "Vol",
         "VI": "Voli", "A2CH": "A2C", "A4CH": "A4C", "L2CH": "L2C", "L4CH": "L4C"}.get(m, m)
    return f"{side}-{m}"


def transposed_field_columns(s: Sheet) -> str:
    """Trend sheet: every measurement is a column, the current and a prior study are rows."""
    i = s.ident
    ds = s.pick(("iso", "us", "mon"))
    with_prior = s.rng.random() < 0.7
    this = s.date("study", ds)
    before = s.date("prior", ds) if with_prior else ""
    lines = [f"{hospital(s)}  ::  CMR TREND SHEET", f"{s.phi(i.patient.dicom)}  /  {s.phi(i.mrn)}  /  "
             f"{'male' if s.case.sex == 'male' else 'female'}, {i.age} y", "",
             "Rows are examinations, columns are measurements (units in the second header row).", ""]
    keys = s.only(list(BODY) + ventricle("LV") + ventricle("RV") + dimensions("LV") + dimensions("RV")
                  + atrium("LA") + atrium("RA") + list(TISSUE))
    prior_ok = set(ventricle("LV") + ventricle("RV") + atrium("LA") + atrium("RA"))
    row_head = max(len(this), len(before)) + 12
    per_block = s.rng.choice((5, 6, 7))
    for start in range(0, len(keys), per_block):
        block = keys[start:start + per_block]
        cur = [s.num(k) for k in block]
        old = [s.prior(k) if k in prior_ok and s.rng.random() < 0.8 else "--" for k in block] if with_prior else []
        heads = [_column_label(k) for k in block]
        units = [s.unit(k) or "ratio" for k in block]
        widths = [max(len(a), len(b), len(c), len(d) if old else 0, 5)
                  for a, b, c, d in zip(heads, units, cur, old or cur)]
        def row(cells: list[str], first: str, widths: list[int] = widths) -> str:
            return f"{first:<{row_head}}|" + "|".join(f" {c:>{w}} " for c, w in zip(cells, widths))

        lines.append(row(heads, "Exam"))
        lines.append(row(units, ""))
        lines.append("-" * row_head + "+" + "+".join("-" * (w + 2) for w in widths))
        lines.append(row(cur, f"{this} (this)"))
        if old:
            lines.append(row(old, f"{before} (prior)"))
        lines.append("")
    if with_prior:
        s.note("Transposed table: fields are columns; the prior-study row is a distractor.")
    lines += ["Comment:", clinical.lv_comment(s), clinical.rv_comment(s), clinical.atria_comment(s),
              clinical.tissue_comment(s), *clinical.extra_findings(s), "",
              "Summary: " + " ".join(clinical.impression(s)), "", f"Read by {s.phi(i.reader.full)}"]
    return "\n".join(lines)


def semicolon_coded_export(s: Sheet) -> str:
    """Semicolon-separated segments with coded labels (VEN.L.VOL.ED), UCUM units, ranges and flags."""
    i = s.ident
    p = i.patient
    ymd = lambda d: d.strftime("%Y%m%d")  # noqa: E731
    lines = [f"HDR;CMRQ-EXPORT;3.1;{s.phi(ymd(i.study))}{i.study_time.replace(':', '')}",
             f"PID;{s.phi(f'{p.last.upper()}^{p.first.upper()}')};{s.phi(i.mrn)};{s.phi(ymd(i.dob))};{'M' if s.case.sex == 'male' else 'F'}",
             f"ORD;{s.phi(i.accession)};MR HEART FUNCTION;{s.phi(f'{i.referrer.last}^{i.referrer.first}')}",
             f"NTE;IND;{clinical.indication(s)}"]
    seq = 0
    keys = s.only(list(BODY) + ventricle("LV") + dimensions("LV") + ventricle("RV") + dimensions("RV")
                  + atrium("LA") + atrium("RA") + list(TISSUE))
    x = s.case.extras
    extra_rows = [("FLW.AO.FWD", lambda: s.distract(x["ao_flow"], 0, ("LVSV", "RVSV"), "Coded non-field rows (flows, ratios, gradients) are distractors."), "mL/{beat}")]
    if s.case.category == "HCM":
        extra_rows.append(("GRD.LVOT.PK", lambda: s.distract(x["lvot_gradient"], 0, ("SBP", "DBP"), ""), "mm[Hg]"))
    if s.case.category == "PAH":
        extra_rows.append(("DIA.PA.MAIN", lambda: s.distract(x["mpa_mm"], 0, clinical.LENGTH_CONFUSABLE, "", 0.1), "mm"))
    if s.case.category == "Ebstein":
        extra_rows.append(("RAT.QP.QS", lambda: s.distract(x["qpqs"], 1, ("BSA",), ""), "1"))
    for k in keys:
        seq += 1
        unit = s.unit(k) or "1"
        value = s.num(k)
        ref = s.ref_range(k, "-")
        flag = ""
        if ref:
            lo, hi = (float(t) for t in ref.split("-"))
            truth = float(value)
            flag = "L" if truth < lo else "H" if truth > hi else "N"
        lines.append(f"OBX;{seq};{code(k)};{value};{unit};{ref};{flag}")
        if s.rng.random() < 0.08 and extra_rows:
            name, fn, unit = extra_rows.pop(0)
            seq += 1
            lines.append(f"OBX;{seq};{name};{fn()};{unit};;")
    lines.append(f"NTE;FND;{clinical.lv_comment(s)} {clinical.rv_comment(s)} {clinical.tissue_comment(s)}")
    for extra in clinical.extra_findings(s):
        lines.append(f"NTE;FND;{extra}")
    for n, imp in enumerate(clinical.impression(s), 1):
        lines.append(f"NTE;IMP{n};{imp}")
    lines.append(f"SIG;{s.phi(i.reader.full)};{s.phi(ymd(i.signed))}")
    s.note("Semicolon export with coded labels and UCUM units; reference range and flag columns are not values.")
    return "\n".join(lines)


def consult_letter_prose(s: Sheet) -> str:
    """A letter to the referrer whose sentences avoid the usual labels ('fills to', 'empties to')."""
    i = s.ident
    he, his = ("he", "his") if s.case.sex == "male" else ("she", "her")
    ds = "long"
    v = lambda k: s.val(k)  # noqa: E731
    lines = [hospital(s), "Cardiovascular Magnetic Resonance Service", "", s.date("signed", ds), "",
             f"Dear Dr {s.phi(i.referrer.last)},", "",
             f"Re: {s.phi(i.patient.full)}, born {s.date('dob', ds)}, hospital number {s.phi(i.mrn)}", "",
             f"Thank you for asking us to scan this {i.age}-year-old. {clinical.indication(s)} "
             f"We saw {'him' if he == 'he' else 'her'} on {s.date('study', ds)}."]
    para: list[str] = []
    body = [f"stands {v('HEIGHT')} tall" if s.has("HEIGHT") else "", f"weighs {v('WEIGHT')}" if s.has("WEIGHT") else ""]
    body = [b for b in body if b]
    if body:
        para.append(f"{he.capitalize()} " + " and ".join(body) + (f", a body surface of {v('BSA')}." if s.has("BSA") else "."))
    elif s.has("BSA"):
        para.append(f"{his.capitalize()} body surface comes to {v('BSA')}.")
    pulse = [f"{his} pulse ran at {v('BHR')}" if s.has("BHR") else "",
             f"{his} blood pressure read {s.num('SBP')} over {s.num('DBP')}" if s.has("SBP") else ""]
    pulse = [p for p in pulse if p]
    if pulse:
        para.append("While in the scanner " + " and ".join(pulse) + ".")
    for side, name in (("LV", "left"), ("RV", "right")):
        c = []
        if s.any(f"{side}EDV", f"{side}EDVI"):
            c.append(f"fills to {s.pair(f'{side}EDV', fmt='{a}, {i} once indexed,')} at end-diastole")
        if s.any(f"{side}ESV", f"{side}ESVI"):
            c.append(f"empties to {s.pair(f'{side}ESV')}")
        if s.any(f"{side}SV", f"{side}SVI"):
            c.append(f"ejecting {s.pair(f'{side}SV', fmt='{a} with each beat ({i} indexed)')}")
        if s.has(f"{side}EF"):
            c.append(f"so that {v(f'{side}EF')} of its contents leaves with each contraction")
        if c:
            para.append(f"The {name} ventricle " + ", ".join(c) + ".")
        co, ci = f"{side}CO", f"{side}COI"
        if s.has(co, ci):
            para.append(f"The {name} ventricle pumps {v(co)}, or {v(ci)} once body size is allowed for.")
        elif s.has(co):
            para.append(f"The {name} ventricle pumps {v(co)}.")
        elif s.has(ci):
            para.append(f"Allowing for body size, the {name} ventricle pumps {v(ci)}.")
        if s.any(f"{side}MASS", f"{side}MASSI"):
            para.append(f"The {name}-sided muscle weighs {s.pair(f'{side}MASS', fmt='{a} ({i} for body size)')}.")
        span = [f"{v(f'{side}EDD')} when relaxed" if s.has(f"{side}EDD") else "",
                f"{v(f'{side}ESD')} when contracted" if s.has(f"{side}ESD") else ""]
        span = [x for x in span if x]
        if span:
            para.append(f"Across its {'short axis' if side == 'LV' else 'base'} the {name} ventricular cavity spans " + " and ".join(span) + ".")
    walls = [f"the septum is {v('LVAWT')} thick" if s.has("LVAWT") else "",
             f"the inferolateral wall {v('LVIWT')}" if s.has("LVIWT") else ""]
    walls = [w for w in walls if w]
    if walls:
        para.append("At end-diastole " + ", while ".join(walls) + ".")
    for side, name in (("LA", "left"), ("RA", "right")):
        if s.any(f"{side}V", f"{side}VI"):
            para.append(f"The {name} atrium holds {s.pair(f'{side}V', fmt='{a} (that is {i})')}.")
        traced = [f"covers {v(f'{side}A4CH')} in the four-chamber view" if s.has(f"{side}A4CH") else "",
                  f"covers {v(f'{side}A2CH')} in the two-chamber view" if s.has(f"{side}A2CH") else "",
                  f"reaches {v(f'{side}L4CH')} from roof to valve on the four-chamber image" if s.has(f"{side}L4CH") else "",
                  f"reaches {v(f'{side}L2CH')} on the two-chamber image" if s.has(f"{side}L2CH") else ""]
        traced = [t for t in traced if t]
        if traced:
            para.append(f"Traced in systole, the {name} atrium " + ", ".join(traced) + ".")
    t1 = [f"myocardial T1 was {v('PRET1M')}" if s.has("PRET1M") else "",
          f"that of blood {v('PRET1B')}" if s.has("PRET1B") else ""]
    t1 = [t for t in t1 if t]
    if t1:
        para.append("Before contrast, " + " and ".join(t1) + ".")
    post = [f"the muscle fell to {v('POSTT1M')}" if s.has("POSTT1M") else "",
            f"the blood to {v('POSTT1B')}" if s.has("POSTT1B") else ""]
    post = [p for p in post if p]
    if post:
        para.append("After gadolinium " + " and ".join(post) + ".")
    if s.has("ECV"):
        para.append((f"Taking {his} haematocrit of {v('HCT')}, " if s.has("HCT") else "")
                    + f"the extracellular volume works out at {v('ECV')}.")
    elif s.has("HCT"):
        para.append(f"{his.capitalize()} haematocrit on the day was {v('HCT')}.")
    rest = s.remaining()
    if rest:
        para.append("We also recorded: " + "; ".join(f"{long_label(k).lower()} {v(k)}" for k in rest) + ".")
    comments = [clinical.lv_comment(s), clinical.rv_comment(s), clinical.tissue_comment(s), *clinical.extra_findings(s)]
    lines += ["", " ".join(para), "", "Qualitatively: " + " ".join(comments), "",
              "In summary: " + " ".join(clinical.impression(s)), "", "With kind regards,", "",
              s.phi(i.reader.full), "Consultant Cardiologist"]
    if s.rng.random() < 0.5:
        lines.append(f"cc: {s.phi(i.second_reader.full)}, heart failure nurse specialist")
    s.note("Free-prose letter: values are introduced by unusual phrasing ('fills to', 'empties to', 'works out at').")
    return "\n".join(lines)
