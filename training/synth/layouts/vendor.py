"""Vendor analysis exports: cvi42-like, syngo/Argus-like, Medis/QMass-like, SuiteHeart-like."""

from __future__ import annotations

from .. import clinical
from ..sheet import Sheet
from .common import (BODY, TISSUE, abbrev, atrium, dimensions, header, hospital, long_label, sex_letter, short_label,
                     signoff, ventricle)


def _vitals_inline(s: Sheet, sep: str, labels: dict[str, str]) -> str:
    parts = [f"{labels[k]} {s.val(k)}" for k in ("HEIGHT", "WEIGHT", "BSA", "BHR") if s.has(k)]
    if s.has("SBP"):
        parts.append(f"{labels['BP']} {s.bp()}")
    return sep.join(parts)


def cvi42_normal_range(s: Sheet) -> str:
    """Parameter / Value / Unit / Normal range tables per chamber, physician comments below."""
    i = s.ident
    ds = s.pick(("iso", "us", "mon"))
    lines = [s.pick(("cvi42 Report  |  Cardiovascular Imaging Analysis", "cvi42 5.x  -  Quantitative CMR Report")),
             f"{hospital(s)} - Cardiac MR", "",
             f"Patient Name:  {s.phi(i.patient.last_first)}", f"Patient ID:    {s.phi(i.mrn)}",
             f"Birth Date:    {s.date('dob', ds)}      Sex: {sex_letter(s)}      Age: {i.age}Y",
             f"Study Date:    {s.date('study', ds)}", f"Accession:     {s.phi(i.accession)}",
             f"Referring:     Dr. {s.phi(i.referrer.initial_last)}", ""]
    vit = _vitals_inline(s, "   ", {"HEIGHT": "Height:", "WEIGHT": "Weight:", "BSA": "BSA (Mosteller):",
                                    "BHR": "Heart rate:", "BP": "BP:"})
    if vit:
        lines += [vit, ""]
    variant = s.rng.randint(0, 2)
    with_ranges = s.rng.random() < 0.85

    def table(title: str, keys: list[str]) -> None:
        keys = s.only(keys)
        if not keys:
            return
        lines.append(title)
        lines.append(f"{'Parameter':<36}{'Value':>7}   {'Unit':<10} {'Normal range' if with_ranges else ''}".rstrip())
        lines.append("-" * 68)
        for k in keys:
            label = "LV Mass (diastolic)" if k == "LVMASS" else short_label(k, variant)
            rng_text = s.ref_range(k) if with_ranges else ""
            lines.append(f"{label:<36}{s.num(k):>7}   {s.unit(k):<10} {rng_text}".rstrip())
        lines.append("")

    table("Left Ventricle - Short Axis 3D (papillary muscles included in mass)", ventricle("LV"))
    table("Right Ventricle - Short Axis 3D", ventricle("RV"))
    table("Linear measurements (3-chamber / 4-chamber)", dimensions("LV") + dimensions("RV"))
    table("Atria (LV end-systole)", atrium("LA") + atrium("RA"))
    table(f"Tissue characterisation - T1 mapping (MOLLI, {s.case.tesla:g}T)", list(TISSUE))
    table("Other", s.remaining())
    lines += ["Physician comments", "-" * 68, clinical.lv_comment(s), clinical.rv_comment(s),
              clinical.tissue_comment(s), *clinical.extra_findings(s), "",
              "Conclusion:", *[f"- {x}" for x in clinical.impression(s)], ""]
    lines += signoff(s, ds)
    return "\n".join(lines)


def syngo_lv_rv_columns(s: Sheet) -> str:
    """One row per measure, LV and RV as columns, 'Ref.' columns with ranges in parentheses."""
    i = s.ident
    ds = s.pick(("us", "uk", "iso"))
    lines = [s.pick(("syngo.via  -  MR Cardiac Function (Argus)", "SIEMENS syngo  MR Cardiac Function Report")),
             f"{hospital(s)} - CMR Unit", "",
             f"Patient: {s.phi(i.patient.last_first)}   ID: {s.phi(i.mrn)}   DOB: {s.date('dob', ds)}",
             f"Exam date: {s.date('study', ds)}   Acc#: {s.phi(i.accession)}", ""]
    vit = _vitals_inline(s, ", ", {"HEIGHT": "Height", "WEIGHT": "Weight", "BSA": "BSA", "BHR": "HR", "BP": "BP"})
    if vit:
        lines += [f"Patient parameters: {vit}", ""]
    names = {"EDV": "End-Diastolic Volume", "ESV": "End-Systolic Volume", "SV": "Stroke Volume",
             "EF": "Ejection Fraction", "CO": "Cardiac Output", "MASS": "Myocardial Mass", "EDVI": "EDV Index",
             "ESVI": "ESV Index", "SVI": "SV Index", "COI": "Cardiac Index", "MASSI": "Mass Index"}
    order = ("EDV", "ESV", "SV", "EF", "CO", "MASS", "EDVI", "ESVI", "SVI", "COI", "MASSI")
    lines.append(f"{'Parameter':<26}{'LV':>8}{'RV':>8}   {'Unit':<11}{'Ref. LV':<12}{'Ref. RV':<12}")
    for m in order:
        lv, rv = f"LV{m}", f"RV{m}"
        if not s.any(lv, rv):
            continue
        unit = s.unit(lv if s.has(lv) else rv)
        cells = [s.num(k) if s.has(k) else "-" for k in (lv, rv)]
        refs = [s.ref_range(k, "-") if s.has(k) else "" for k in (lv, rv)]
        refs = [f"({r})" if r else "" for r in refs]
        lines.append(f"{names[m]:<26}{cells[0]:>8}{cells[1]:>8}   {unit:<11}{refs[0]:<12}{refs[1]:<12}".rstrip())
    lines += ["", "REPORT", f"Referring clinician: {s.phi(i.referrer.full)}",
              f"Clinical question: {clinical.indication(s)}", clinical.technique(s), "", "Findings:"]
    dims = "; ".join(f"{abbrev(k)} {s.val(k)}" for k in s.only(dimensions("LV")))
    lines.append(f"LV: {clinical.lv_comment(s)}" + (f" ({dims})" if dims else ""))
    rdims = "; ".join(f"{short_label(k)} {s.val(k)}" for k in s.only(dimensions("RV")))
    lines.append(f"RV: {clinical.rv_comment(s)}" + (f" ({rdims})" if rdims else ""))
    atria = [f"{side} volume {s.pair(f'{side}V')}" for side in ("LA", "RA") if s.any(f"{side}V", f"{side}VI")]
    atria += [f"{short_label(k)} {s.val(k)}" for k in s.only(atrium("LA") + atrium("RA")) if k not in s.truth]
    lines.append(f"Atria: {clinical.atria_comment(s)}" + (f" {'; '.join(atria)}." if atria else ""))
    tissue = [f"{long_label(k).lower() if k != 'ECV' else 'ECV'} {s.val(k)}" for k in s.only(TISSUE)]
    lines.append(f"LGE: {clinical.tissue_comment(s)}" + (f" T1 mapping: {'; '.join(tissue)}." if tissue else ""))
    rest = s.remaining()
    if rest:
        lines.append("Other: " + "; ".join(f"{long_label(k)} {s.val(k)}" for k in rest) + ".")
    lines += clinical.extra_findings(s)
    lines += ["", "Conclusion:", *[f"  - {x}" for x in clinical.impression(s)], ""]
    lines += signoff(s, ds)
    return "\n".join(lines)


def medis_bracket_units(s: Sheet) -> str:
    """'key [unit] : value' lines, absolute and indexed side by side, physician report after."""
    i = s.ident
    ds = s.pick(("mon", "iso", "eu"))
    bar = "=" * 60
    rule = "-" * 60
    lines = [s.pick(("Medis Suite MR  -  QMass  -  Analysis Report", "QMass 8.1 (Medis)  -  Ventricular Analysis")), bar,
             f"Patient name      : {s.phi(i.patient.dicom)}", f"Patient ID        : {s.phi(i.mrn)}",
             f"Date of birth     : {s.date('dob', ds)}", f"Study date        : {s.date('study', ds)}",
             "Study description : MR CARDIAC W/WO CONTRAST", f"Institution       : {hospital(s)}", rule]

    def cell(k: str) -> str:
        label = short_label(k, 2).split(" ", 1)[1]
        return f"{label:<11} [{s.unit(k)}]".ljust(22) + f"{s.num(k):>8}"

    if s.any(*BODY):
        lines.append("Patient data")
        for k in s.only(("HEIGHT", "WEIGHT", "BSA", "BHR")):
            lines.append(f"  {long_label(k):<7} [{s.unit(k) or 'ft/in'}]".ljust(24) + f": {s.num(k)}")
        if s.has("SBP"):
            lines.append(f"  {'Blood pressure [mmHg]':<22}: {s.num('SBP')}/{s.num('DBP')}")
        lines.append(rule)
    for side, title in (("LV", "Left Ventricle (short axis, ED phase {} / ES phase {})"),
                        ("RV", "Right Ventricle (short axis, ED phase {} / ES phase {})")):
        keys = s.only(ventricle(side))
        if not keys:
            continue
        lines.append(title.format(s.rng.randint(1, 3), s.rng.randint(9, 14)))
        for m, mi in (("EDV", "EDVI"), ("ESV", "ESVI"), ("SV", "SVI"), ("EF", None), ("CO", "COI"), ("MASS", "MASSI")):
            row = [cell(k) for k in (f"{side}{m}", f"{side}{mi}" if mi else "") if k and s.has(k)]
            if row:
                lines.append("  " + "     ".join(row))
        lines.append("")
    dims = s.only(dimensions("LV") + dimensions("RV"))
    if dims:
        lines.append("Dimensions (basal short axis)")
        lines += [f"  {short_label(k, 2)} [{s.unit(k)}]".ljust(34) + f"{s.num(k):>6}" for k in dims]
        lines.append("")
    atria = s.only(atrium("LA") + atrium("RA"))
    if atria:
        lines.append("Atria (biplane area-length)")
        lines += [f"  {short_label(k, 2)} [{s.unit(k)}]".ljust(34) + f"{s.num(k):>6}" for k in atria]
        lines.append("")
    tissue = s.only(TISSUE)
    if tissue:
        lines.append(f"T1 mapping ({s.case.tesla:g}T, MOLLI)")
        lines += [f"  {long_label(k)} [{s.unit(k) or 'fraction'}]".ljust(42) + f"{s.num(k):>7}" for k in tissue]
    lines += [rule, "Physician report", f"Indication: {clinical.indication(s)}", *clinical.extra_findings(s),
              clinical.lv_comment(s), clinical.rv_comment(s), clinical.atria_comment(s), clinical.tissue_comment(s),
              "", "Impression:", *[f"  * {x}" for x in clinical.impression(s)], "",
              f"Analysis: {s.phi(i.technologist.full)}   Reviewed and approved: Dr. {s.phi(i.reader.full)}   "
              f"{s.date('signed', ds)}"]
    return "\n".join(lines)


def suiteheart_pipes(s: Sheet) -> str:
    """Pipe-separated vitals, LV | RV function grid with 'abs (index)' cells, one-line summaries."""
    i = s.ident
    ds = s.pick(("us", "iso"))
    lines = [s.pick(("suiteHEART Cardiac MRI Analysis  -  FUNCTION & FLOW SUMMARY",
                     "SuiteHeart (NeoSoft)  |  Cardiac Function Report")), ""]
    lines += header(s, ds, keyword_share=0.8)
    lines.append(f"Site: {hospital(s)}")
    lines.append("")
    vit = _vitals_inline(s, " | ", {"HEIGHT": "Ht", "WEIGHT": "Wt", "BSA": "BSA", "BHR": "HR", "BP": "BP"})
    if vit:
        lines += [vit, ""]
    width = 30
    lines.append(f"{'FUNCTION':<16}| {'LV':<{width}}| {'RV':<{width}}")
    for title, m, mi in (("EDV (index)", "EDV", "EDVI"), ("ESV (index)", "ESV", "ESVI"), ("SV (index)", "SV", "SVI"),
                         ("EF", "EF", None), ("CO (CI)", "CO", "COI"), ("Mass (ED)", "MASS", "MASSI")):
        cells = []
        for side in ("LV", "RV"):
            k, ki = f"{side}{m}", f"{side}{mi}" if mi else None
            cells.append(s.pair(k, ki) if ki else (s.val(k) if s.has(k) else ""))
        if any(cells):
            lines.append(f"{title:<16}| {cells[0]:<{width}}| {cells[1]:<{width}}".rstrip())
    lines.append("")
    summary = [("DIMENSIONS", dimensions("LV") + dimensions("RV")), ("ATRIA", atrium("LA") + atrium("RA")),
               ("T1/ECV", list(TISSUE))]
    for title, keys in summary:
        keys = s.only(keys)
        if keys:
            lines.append(f"{title}: " + "; ".join(f"{short_label(k)} {s.val(k)}" for k in keys))
    rest = s.remaining()
    if rest:
        lines.append("OTHER: " + "; ".join(f"{short_label(k)} {s.val(k)}" for k in rest))
    lines += ["", "INTERPRETATION", f"History: {clinical.indication(s)}", clinical.lv_comment(s),
              clinical.rv_comment(s), clinical.atria_comment(s), clinical.tissue_comment(s),
              *clinical.extra_findings(s), "", "IMPRESSION:",
              *[f"{n}. {x}" for n, x in enumerate(clinical.impression(s), 1)], ""]
    lines.append(f"Interpreting physician: {s.phi(i.reader.full)}, MD  ({s.date('signed', ds)})")
    return "\n".join(lines)
