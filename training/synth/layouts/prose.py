"""Prose-like reports: narrative dictation, terse bullets, ALL-CAPS telegraph, European, typo-ridden
dictation, and a report whose addendum adds (or corrects) values."""

from __future__ import annotations

from .. import clinical
from ..sheet import Sheet
from .common import (SIDE_NOUN, TISSUE, abbrev, atrium, dimensions, header, hospital, long_label, short_label,
                     signoff, ventricle)


def _join(parts: list[str]) -> str:
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _v(s: Sheet, key: str, template: str) -> str:
    """``template`` with {v} = the field's value and unit, or '' when the field is not stated."""
    return template.format(v=s.val(key)) if s.has(key) else ""


# -- narrative paragraphs (shared by dictation, typo dictation and the addendum report) -------------

def vitals_sentence(s: Sheet) -> str:
    out = []
    body = _join([_v(s, "HEIGHT", "height {v}"), _v(s, "WEIGHT", "weight {v}"), _v(s, "BSA", "BSA {v}")])
    if body:
        out.append(f"Patient {body}.")
    hr = s.pick(("Heart rate during acquisition was {v} in sinus rhythm", "Average heart rate during the study was {v}",
                 "The heart rate was {v}")).format(v=s.val("BHR")) if s.has("BHR") else ""
    bp = f"blood pressure {s.bp()}" if s.has("SBP") else ""
    if hr and bp:
        out.append(f"{hr}; {bp}.")
    elif hr or bp:
        out.append((hr or bp[0].upper() + bp[1:]) + ".")
    return " ".join(out)


def ventricle_paragraph(s: Sheet, side: str, joint_ef: bool) -> str:
    noun = SIDE_NOUN[side]
    size, fn = clinical.size_word(s, side), clinical.function_word(s, side)
    vols = _join([f"an end-diastolic volume of {s.pair(f'{side}EDV')}" if s.any(f"{side}EDV", f"{side}EDVI") else "",
                  f"an end-systolic volume of {s.pair(f'{side}ESV')}" if s.any(f"{side}ESV", f"{side}ESVI") else ""])
    out = [f"The {noun} is {size}" + (f", with {vols}." if vols else ".")]
    if s.any(f"{side}SV", f"{side}SVI"):
        out.append(s.pick(("Stroke volume is {}.", "The stroke volume measures {}.")).format(s.pair(f"{side}SV")))
    if s.has(f"{side}EF") and not joint_ef:
        out.append(s.pick((f"Global systolic function is {fn} with an ejection fraction of {{}}.",
                           f"{side}EF is {{}} ({fn}).", "The ejection fraction measures {}.")).format(s.val(f"{side}EF")))
    co, ci = f"{side}CO", f"{side}COI"
    if s.has(co, ci):
        out.append(f"Cardiac output is {s.val(co)} with a cardiac index of {s.val(ci)}.")
    elif s.any(co, ci):
        out.append(f"Cardiac output {s.val(co)}." if s.has(co) else f"Cardiac index {s.val(ci)}.")
    if s.any(f"{side}MASS", f"{side}MASSI"):
        out.append(f"{side} mass is {s.pair(f'{side}MASS')}.")
    edd, esd = f"{side}EDD", f"{side}ESD"
    if s.has(edd, esd):
        out.append(f"The {side} end-diastolic diameter measures {s.val(edd)} and the end-systolic diameter {s.val(esd)}.")
    elif s.any(edd, esd):
        out.append(_v(s, edd, "End-diastolic diameter {v}.") or _v(s, esd, "End-systolic diameter {v}."))
    walls = _join([_v(s, "LVAWT", "{v} at the anteroseptum"), _v(s, "LVIWT", "{v} inferolaterally")]) if side == "LV" else ""
    if walls:
        out.append(f"Wall thickness is {walls}.")
    out.append((clinical.lv_comment if side == "LV" else clinical.rv_comment)(s))
    return " ".join(out)


def atria_paragraph(s: Sheet) -> str:
    out = [clinical.atria_comment(s)]
    for side in ("LA", "RA"):
        word = "left" if side == "LA" else "right"
        if s.any(f"{side}V", f"{side}VI"):
            out.append(f"The {word} atrial volume is {s.pair(f'{side}V')}.")
        areas = _join([_v(s, f"{side}A4CH", "{v} in the 4-chamber view"), _v(s, f"{side}A2CH", "{v} in the 2-chamber view")])
        if areas:
            out.append(f"{side} area is {areas}.")
        lengths = _join([_v(s, f"{side}L4CH", "{v} (4-chamber)"), _v(s, f"{side}L2CH", "{v} (2-chamber)")])
        if lengths:
            out.append(f"{side} length {lengths}.")
    return " ".join(out)


def tissue_paragraph(s: Sheet) -> str:
    t1 = _join([_v(s, "PRET1M", "native myocardial T1 {v}"), _v(s, "PRET1B", "native blood T1 {v}"),
                _v(s, "POSTT1M", "post-contrast myocardial T1 {v}"), _v(s, "POSTT1B", "post-contrast blood T1 {v}")])
    out = [clinical.tissue_comment(s)]
    if t1:
        out.append(f"T1 mapping: {t1}.")
    if s.has("HCT", "ECV"):
        out.append(s.pick(("With a same-day hematocrit of {h}, the calculated extracellular volume is {e}.",
                           "Hematocrit {h}; ECV {e}.")).format(h=s.val("HCT"), e=s.val("ECV")))
    else:
        out.append(_v(s, "HCT", "Hematocrit {v}.") or _v(s, "ECV", "Extracellular volume fraction {v}."))
    return " ".join(x for x in out if x)


def leftovers(s: Sheet, intro: str = "Additional measurements: ") -> str:
    rest = s.remaining()
    return intro + "; ".join(f"{long_label(k)} {s.val(k)}" for k in rest) + "." if rest else ""


def narrative_findings(s: Sheet) -> list[str]:
    joint = s.has("LVEF", "RVEF") and s.rng.random() < 0.35
    paras = [vitals_sentence(s), ventricle_paragraph(s, "LV", joint), ventricle_paragraph(s, "RV", joint)]
    if joint:
        paras.append(s.pick(("LVEF and RVEF are {} and {}, respectively.",
                             "Left and right ventricular ejection fractions are {} and {}, respectively."))
                     .format(s.val("LVEF"), s.val("RVEF")))
    paras += [atria_paragraph(s), tissue_paragraph(s), *clinical.extra_findings(s), leftovers(s)]
    return [p for p in paras if p]


def narrative_dictation(s: Sheet) -> str:
    """Dictated radiology report: history, comparison, technique, prose findings, impression."""
    ds = s.pick(("us", "long", "us"))
    i = s.ident
    who = "man" if s.case.sex == "male" else "woman"
    title = "Mr." if s.case.sex == "male" else "Ms."
    lines = [hospital(s), "Department of Radiology - Cardiovascular Imaging", ""] + header(s, ds, 0.5) + [
        "EXAM: MRI CARDIAC MORPHOLOGY AND FUNCTION WITH AND WITHOUT CONTRAST", "",
        f"CLINICAL HISTORY: {title} {s.phi(i.patient.last)} is a {i.age}-year-old {who}. {clinical.indication(s)}", ""]
    if s.rng.random() < 0.5:
        lines += [f"COMPARISON: Cardiac MRI dated {s.date('prior', ds)}.", ""]
    else:
        lines += ["COMPARISON: None available.", ""]
    lines += [f"TECHNIQUE: {clinical.technique(s)}", "", "FINDINGS:"]
    lines += [p + "\n" for p in narrative_findings(s)]
    lines += ["IMPRESSION:", *[f"{n}. {x}" for n, x in enumerate(clinical.impression(s), 1)], ""]
    lines += signoff(s, ds)
    return "\n".join(lines)


def typo_dictation(s: Sheet) -> str:
    """Lower-case, hurried dictation with word-level typos (numbers intact)."""
    i = s.ident
    ds = "us"
    head = [f"CARDIAC MR - dictated report    {hospital(s)}",
            f"pt name {s.phi(i.patient.full.lower())}, mrn {s.phi(i.mrn)}, dob {s.date('dob', ds)}",
            f"scan date {s.date('study', ds)}, referring dr {s.phi(i.referrer.last.lower())}", ""]
    who = "man" if s.case.sex == "male" else "woman"
    body = [f"History: {i.age} yo {who}. {clinical.indication(s)}", ""] + narrative_findings(s)
    body += ["", "Impression:", *clinical.impression(s)]
    text = clinical.typo("\n".join(body), s.rng)
    return "\n".join(head) + "\n" + text + f"\n\n{s.phi(i.reader.full)} md, {s.date('signed', ds)}"


def report_with_addendum(s: Sheet) -> str:
    """Final report plus an addendum carrying values that were pending (or a corrected value)."""
    ds = s.pick(("us", "iso"))
    i = s.ident
    pending_groups = [list(TISSUE), atrium("LA") + atrium("RA"), ventricle("RV"), ["LVMASS", "LVMASSI"]]
    held = set(s.only(s.rng.choice(pending_groups)))
    correction = None
    if held & {"LVMASS", "LVEDV", "RVEDV", "LAV", "RAV"} and s.rng.random() < 0.5:
        correction = sorted(held & {"LVMASS", "LVEDV", "RVEDV", "LAV", "RAV"})[0]
    wrong = ""
    if correction:
        unit, factor, dec = s.unit_info(correction)
        wrong = s.distract(s.values[correction] * s.rng.choice((0.8, 1.2)) / factor, dec, (correction,),
                           "The addendum corrects a value; the originally dictated number is a distractor.", factor)
        wrong = f"{wrong} {unit}".strip()
    stated = s.stated
    s.stated = stated - held
    lines = [hospital(s), "MAGNETIC RESONANCE IMAGING OF THE HEART - FINAL REPORT WITH ADDENDUM", ""]
    lines += header(s, ds, 0.7)
    lines += ["", f"HISTORY: {clinical.indication(s)}", f"TECHNIQUE: {clinical.technique(s)}", "", "FINDINGS:"]
    lines += narrative_findings(s)
    if correction:
        lines.append(f"{long_label(correction)}: {wrong}.")
    lines += ["", "IMPRESSION:", *[f"{n}. {x}" for n, x in enumerate(clinical.impression(s), 1)], ""]
    lines.append(f"Electronically signed by {s.phi(i.reader.full)}, MD on {s.date('signed', ds)} at {i.study_time}")
    s.stated = stated
    if not held:
        return "\n".join(lines)
    add = [""]
    add.append(f"ADDENDUM ({s.date('signed', ds)}):")
    if correction:
        add.append(f"Correction: the {long_label(correction)} was transcribed as {wrong} in the original report; "
                   f"the correct value is {s.val(correction)}.")
    if held & set(TISSUE):
        add.append("Hematocrit from the day of the examination became available.")
    rest = [k for k in s.remaining()]
    if rest:
        add.append("Values pending at the time of the report: " + "; ".join(f"{long_label(k)} {s.val(k)}" for k in rest) + ".")
    s.note("Some values only appear in the addendum.")
    add.append(f"Addendum signed by {s.phi(i.second_reader.full)}, MD")
    return "\n".join(lines + add)


# -- terse and telegraph styles ---------------------------------------------------------------------

def terse_bullets(s: Sheet) -> str:
    """Clinic-note bullets with abbreviations (EDVi, ESVi, SVi, CI, LVMi, WT) and 'LVEF/RVEF 20/45 %'."""
    i = s.ident
    ds = s.pick(("mon", "us"))
    lines = [f"CMR {s.date('study', ds)} -- {s.phi(i.patient.full)} -- MRN {s.phi(i.mrn)}",
             f"Ref: Dr {s.phi(i.referrer.initial_last)}", "", f"Ind: {clinical.indication(s)}"]
    vit = [f"{short_label(k)} {s.val(k) if k in ('HEIGHT', 'WEIGHT') else s.num(k)}"
           for k in s.only(("HEIGHT", "WEIGHT", "BSA", "BHR"))]
    if s.has("SBP"):
        vit.append(f"BP {s.num('SBP')}/{s.num('DBP')}")
    if vit:
        lines.append("Vitals: " + " / ".join(vit))
    joint = s.has("LVEF", "RVEF") and s.rng.random() < 0.5
    for side in ("LV", "RV"):
        items = []
        for m, mi in (("EDV", "EDVI"), ("ESV", "ESVI"), ("SV", "SVI")):
            k, ki = f"{side}{m}", f"{side}{mi}"
            if s.has(k) and s.has(ki):
                items.append(f"{m} {s.val(k)} ({mi[:-1]}i {s.num(ki)})")
            elif s.any(k, ki):
                items.append(f"{m} {s.val(k)}" if s.has(k) else f"{mi[:-1]}i {s.num(ki)}")
        if s.has(f"{side}EF") and not joint:
            items.append(f"EF {s.val(f'{side}EF')}")
        items += [x for x in (_v(s, f"{side}CO", "CO {v}"), _v(s, f"{side}COI", "CI {v}")) if x]
        if s.any(f"{side}MASS", f"{side}MASSI"):
            items.append(" / ".join(x for x in (_v(s, f"{side}MASS", "mass {v}"),
                                                f"{side}Mi {s.num(f'{side}MASSI')}" if s.has(f"{side}MASSI") else "") if x))
        items += [x for x in (_v(s, f"{side}EDD", "EDD {v}"), _v(s, f"{side}ESD", "ESD {v}")) if x]
        if side == "LV" and s.any("LVAWT", "LVIWT"):
            items.append("WT " + " / ".join(x for x in (_v(s, "LVAWT", "septal {v}"), _v(s, "LVIWT", "lateral {v}")) if x))
        lines.append(side)
        lines += [f" - {x}" for x in items]
        lines.append(f" - {(clinical.lv_comment if side == 'LV' else clinical.rv_comment)(s)}")
    if joint:
        sep = s.pick((" ", ""))
        lines.append(f"LVEF/RVEF {s.num('LVEF')}/{s.num('RVEF')}{sep}%")
    atria = s.only(atrium("LA") + atrium("RA"))
    lines.append("Atria")
    lines += [f" - {short_label(k, 1)} {s.val(k)}" for k in atria]
    lines.append(f" - {clinical.atria_comment(s)}")
    tissue = s.only(TISSUE)
    lines.append("Tissue")
    if tissue:
        lines.append(" - " + ", ".join(f"{short_label(k)} {s.val(k)}" for k in tissue))
    lines.append(f" - LGE: {clinical.tissue_comment(s)}")
    lines += [f" - {x}" for x in clinical.extra_findings(s)]
    rest = s.remaining()
    if rest:
        lines.append("Other: " + ", ".join(f"{short_label(k, 1)} {s.val(k)}" for k in rest))
    lines += ["", "Impr:", *[f" - {x}" for x in clinical.impression(s)], "", f"-- {s.phi(i.reader.full)}"]
    return "\n".join(lines)


def allcaps_telegraph(s: Sheet) -> str:
    """Telegraph-style ALL-CAPS report: 'HT 156 CM. WT 68 KG. LVEDV 120 ML (70 ML/M2).'"""
    i = s.ident
    ds = "us"
    lines = [f"*** CARDIAC MRI ***  {hospital(s)}",
             f"PT {s.phi(i.patient.last + ',' + i.patient.first)}  MRN {s.phi(i.mrn)}  DOB {s.date('dob', ds)}",
             f"EXAM DATE {s.date('study', ds)}  ACCT {s.phi(i.account)}  REF DR {s.phi(i.referrer.last)}", "",
             f"HX: {clinical.indication(s)}"]
    vit = [f"{abbrev(k) if k not in ('HEIGHT', 'WEIGHT') else ('HT' if k == 'HEIGHT' else 'WT')} {s.val(k)}."
           for k in s.only(("HEIGHT", "WEIGHT", "BSA", "BHR"))]
    if s.has("SBP"):
        vit.append(f"BP {s.bp()}.")
    if vit:
        lines.append(" ".join(vit))
    lines.append("FINDINGS:")
    for side in ("LV", "RV"):
        items = [f"{side} {clinical.size_word(s, side)}."]
        for k in s.only(ventricle(side) + dimensions(side)):
            if k in s.truth:
                continue
            if f"{k}I" in s.stated:
                items.append(f"{abbrev(k)} {s.pair(k)}.")
            else:
                items.append(f"{abbrev(k) if k not in ('LVAWT', 'LVIWT') else long_label(k)} {s.val(k)}.")
        items.append((clinical.lv_comment if side == "LV" else clinical.rv_comment)(s))
        lines.append(" ".join(items))
    atria = [f"{abbrev(k)} {s.val(k)}." for k in s.only(atrium("LA") + atrium("RA"))]
    lines.append(" ".join(atria + [clinical.atria_comment(s)]))
    lines.append(f"LGE: {clinical.tissue_comment(s)}")
    tissue = [f"{long_label(k) if k not in ('HCT', 'ECV') else k} {s.val(k)}." for k in s.only(TISSUE)]
    if tissue:
        lines.append(" ".join(tissue))
    lines += clinical.extra_findings(s)
    rest = s.remaining()
    if rest:
        lines.append(" ".join(f"{long_label(k)} {s.val(k)}." for k in rest))
    lines += ["", "IMPRESSION:", *[f"{n}. {x}" for n, x in enumerate(clinical.impression(s), 1)], "",
              f"DICTATED {s.phi(i.reader.full)} MD / TRANSCRIBED {s.date('signed', ds)} {i.study_time}",
              "*** END OF REPORT ***"]
    return "\n".join(lines).upper()


# -- European formatting --------------------------------------------------------------------------

def european_decimal_comma(s: Sheet) -> str:
    """Decimal commas, mm and metres, normal ranges in parentheses, DD.MM.YYYY dates."""
    i = s.ident
    ds = "eu"
    sex = "male" if s.case.sex == "male" else "female"
    lines = [f"{s.pick(('Universitätsspital Lindenhof', 'Klinikum Ostholm', 'Hôpital Saint-Aurèle', 'Ospedale San Ilario'))} - Cardiology, CMR",
             "Cardiac magnetic resonance report", "",
             f"Patient: {s.phi(i.patient.last_first)}, born {s.date('dob', ds)} ({sex})",
             f"Patient no.: {s.phi(i.mrn)}   Case no.: {s.phi(i.account)}",
             f"Examination date: {s.date('study', ds)}",
             f"Referring physician: Dr. med. {s.phi(i.referrer.full)}", "",
             f"Indication: {clinical.indication(s)}",
             f"Protocol: {s.fmt(s.case.tesla, 1)} T, cine SSFP (SAX, 2CH, 3CH, 4CH), T1 mapping, LGE 10 min after {s.fmt(0.15, 2)} mmol/kg gadobutrol.", ""]
    bio = [_v(s, k, f"{long_label(k).lower() if k != 'BSA' else 'BSA'} {{v}}") for k in ("HEIGHT", "WEIGHT", "BSA")]
    bio += [_v(s, "BHR", "HR {v}")]
    if s.has("SBP"):
        bio.append(f"BP {s.bp()}")
    bio = [b for b in bio if b]
    if bio:
        lines += [f"Biometrics: {', '.join(bio)}", ""]
    with_normal = s.rng.random() < 0.7

    def item(k: str, name: str) -> str:
        text = f"{name} {s.val(k)}"
        idx = f"{k}I"
        inner = []
        if s.has(idx):
            inner.append(s.val(idx))
        r = s.ref_range(idx if s.has(idx) else k, "–") if with_normal and s.rng.random() < 0.6 else ""
        if r:
            inner.append(f"normal {r} {s.unit(idx if s.has(idx) else k)}")
        return text + (f" ({'; '.join(inner)})" if inner else "")

    names = {"EDV": "EDV", "ESV": "ESV", "SV": "SV", "EF": "EF", "CO": "CO", "MASS": "mass", "EDD": "EDD",
             "ESD": "ESD", "AWT": "septum", "IWT": "lateral wall"}
    for side, title in (("LV", "Left ventricle"), ("RV", "Right ventricle")):
        parts = [item(f"{side}{m}", n) for m, n in names.items() if s.has(f"{side}{m}")]
        parts += [f"{short_label(k, 1).split(' ', 1)[1]} {s.val(k)}" for k in s.only(ventricle(side)) if k not in s.truth]
        comment = (clinical.lv_comment if side == "LV" else clinical.rv_comment)(s)
        lines.append(f"{title}: " + ("; ".join(parts) + "." if parts else "") + f"\n  {comment}")
    atria = []
    for side in ("LA", "RA"):
        if s.has(f"{side}V"):
            atria.append(f"{side} volume " + item(f"{side}V", "").strip())
        atria += [f"{short_label(k)} {s.val(k)}" for k in s.only(atrium(side)) if k not in s.truth]
    lines.append("Atria: " + ("; ".join(atria) + ". " if atria else "") + clinical.atria_comment(s))
    tissue = [f"{long_label(k).lower() if k != 'ECV' else 'ECV'} {s.val(k)}" for k in s.only(TISSUE)]
    lines.append(f"LGE/T1: {clinical.tissue_comment(s)}" + (f" {'; '.join(tissue)}." if tissue else ""))
    lines += clinical.extra_findings(s)
    rest = s.remaining()
    if rest:
        lines.append("Further: " + "; ".join(f"{long_label(k)} {s.val(k)}" for k in rest) + ".")
    lines += ["", "Assessment:", *[f"- {x}" for x in clinical.impression(s)], "",
              f"{s.phi(i.reader.full)} (consultant)   /   {s.phi(i.second_reader.full)} (resident)",
              f"Report finalised {s.date('signed', ds)}"]
    return "\n".join(lines)
