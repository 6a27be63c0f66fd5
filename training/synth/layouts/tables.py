"""Generic tabular and line formats: ASCII box tables, markdown tables, dot leaders, key=value, CSV."""

from __future__ import annotations

from .. import clinical
from ..physiology import measure
from ..sheet import Sheet
from .common import (BODY, TISSUE, abbrev, atrium, dimensions, header, hospital, long_label, short_label,
                     signoff, ventricle)


def _box(rows: list[list[str]], header_rows: int = 1) -> list[str]:
    """An ASCII box table (+---+ borders, '=' under the header)."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    head_rule = "+" + "+".join("=" * (w + 2) for w in widths) + "+"
    out = [rule]
    for n, row in enumerate(rows):
        out.append("| " + " | ".join(cell.rjust(w) if n >= header_rows and c else cell.ljust(w)
                                     for c, (cell, w) in enumerate(zip(row, widths))) + " |")
        if n == header_rows - 1:
            out.append(head_rule)
    out.append(rule)
    return out


def _chamber_rows(s: Sheet, sides: tuple[str, str], measures: tuple[str, ...], names: dict[str, str]) -> list[list[str]] | None:
    """Chambers as rows, measures as columns; a column appears when either chamber states it."""
    cols = [m for m in measures if s.any(*(f"{side}{m}" for side in sides))]
    if not cols:
        return None
    head = ["Chamber"]
    for m in cols:
        k = next(f"{side}{m}" for side in sides if s.has(f"{side}{m}"))
        head.append(f"{names[m]} ({s.unit(k)})" if s.unit(k) else names[m])
    rows = [head]
    for side in sides:
        rows.append([side] + [s.num(f"{side}{m}") if s.has(f"{side}{m}") else "-" for m in cols])
    return rows


def ascii_box_rows(s: Sheet) -> str:
    """Box tables with LV/RV (and LA/RA) as rows and measures as columns."""
    ds = s.pick(("us", "iso", "mon"))
    lines = [hospital(s).upper(), "CARDIAC MRI - QUANTITATIVE REPORT", ""]
    lines += header(s, ds)
    lines += ["", f"INDICATION: {clinical.indication(s)}", ""]
    body = s.only(BODY)
    if body:
        vit = [["Vital", "Value"]]
        if s.has("SBP"):
            vit.append(["Blood pressure", s.bp()])
        vit += [[long_label(k), s.val(k)] for k in body if k not in ("SBP", "DBP")]
        lines += _box(vit) + [""]
    names = {"EDV": "EDV", "ESV": "ESV", "SV": "SV", "EF": "EF", "CO": "CO", "MASS": "Mass", "EDVI": "EDVi",
             "ESVI": "ESVi", "SVI": "SVi", "COI": "CI", "MASSI": "Mass i", "EDD": "EDD", "ESD": "ESD",
             "AWT": "Septal WT", "IWT": "Lateral WT", "V": "Volume", "VI": "Vol index", "A2CH": "Area 2CH",
             "A4CH": "Area 4CH", "L2CH": "Length 2CH", "L4CH": "Length 4CH"}
    blocks = [("VENTRICULAR VOLUMES AND FUNCTION", ("LV", "RV"), ("EDV", "ESV", "SV", "EF", "CO", "MASS")),
              ("INDEXED TO BSA", ("LV", "RV"), ("EDVI", "ESVI", "SVI", "COI", "MASSI")),
              ("DIMENSIONS", ("LV", "RV"), ("EDD", "ESD", "AWT", "IWT")),
              ("ATRIA", ("LA", "RA"), ("V", "VI", "A2CH", "A4CH", "L2CH", "L4CH"))]
    for title, sides, measures in blocks:
        rows = _chamber_rows(s, sides, measures, names)
        if rows:
            lines += [title] + _box(rows) + [""]
    tissue = s.only(TISSUE)
    if tissue:
        lines += ["TISSUE CHARACTERISATION"] + _box([["Parameter", "Value"]] + [[long_label(k), s.val(k)] for k in tissue]) + [""]
    lines += ["COMMENT", clinical.lv_comment(s), clinical.rv_comment(s), clinical.atria_comment(s),
              clinical.tissue_comment(s), *clinical.extra_findings(s), "",
              "IMPRESSION", *[f"{n}. {x}" for n, x in enumerate(clinical.impression(s), 1)], ""]
    lines += signoff(s, ds)
    return "\n".join(lines)


def markdown_columns(s: Sheet) -> str:
    """Markdown: vitals as bullets, then tables with LV | RV and LA | RA as columns."""
    ds = s.pick(("iso", "us", "long"))
    i = s.ident
    lines = [f"# Cardiac MRI report - {hospital(s)}", "",
             f"**Patient:** {s.phi(i.patient.full)}  ", f"**MRN:** {s.phi(i.mrn)}  ",
             f"**Study date:** {s.date('study', ds)}  ", f"**Referring physician:** {s.phi(i.referrer.full)}", "",
             "## Indication", clinical.indication(s), ""]
    body = s.only(BODY)
    if body:
        lines.append("## Patient data")
        if s.has("SBP"):
            lines.append(f"- **Blood pressure:** {s.bp()}")
        lines += [f"- **{long_label(k)}:** {s.val(k)}" for k in body if k not in ("SBP", "DBP")]
        lines.append("")

    def table(title: str, sides: tuple[str, str], keys_a: list[str]) -> None:
        ms = [measure(k) for k in keys_a if s.any(*(f"{side}{measure(k)}" for side in sides))]
        if not ms:
            return
        lines.extend([f"## {title}", "", f"| Parameter | {sides[0]} | {sides[1]} | Unit |", "|---|---:|---:|---|"])
        for m in ms:
            ks = [f"{side}{m}" for side in sides]
            unit = s.unit(next(k for k in ks if s.has(k)))
            cells = [s.num(k) if s.has(k) else "" for k in ks]
            label = short_label(ks[0], 0).split(" ", 1)[1]
            lines.append(f"| {label} | {cells[0]} | {cells[1]} | {unit} |")
        lines.append("")

    table("Ventricles", ("LV", "RV"), ventricle("LV"))
    table("Dimensions", ("LV", "RV"), dimensions("LV"))
    table("Atria", ("LA", "RA"), atrium("LA"))
    tissue = s.only(TISSUE)
    if tissue:
        lines += ["## Tissue characterisation", "", "| Measurement | Value |", "|---|---|"]
        lines += [f"| {long_label(k)} | {s.val(k)} |" for k in tissue] + [""]
    rest = s.remaining()
    if rest:
        lines += [f"- {long_label(k)}: {s.val(k)}" for k in rest] + [""]
    lines += ["## Findings", clinical.lv_comment(s), clinical.rv_comment(s), clinical.atria_comment(s),
              clinical.tissue_comment(s), *clinical.extra_findings(s), "", "## Impression",
              *[f"{n}. {x}" for n, x in enumerate(clinical.impression(s), 1)], ""]
    lines.append(f"_Signed: {s.phi(i.reader.full)}, {s.date('signed', ds)}_")
    return "\n".join(lines)


def dot_leader_lines(s: Sheet) -> str:
    """'Label ........ value unit (index)' lines under chamber headings."""
    ds = s.pick(("us", "mon", "long"))
    formal = s.rng.random() < 0.5
    lines = [hospital(s), "CARDIAC MAGNETIC RESONANCE", ""] + header(s, ds) + ["",
             f"HISTORY: {clinical.indication(s)}", f"TECHNIQUE: {clinical.technique(s)}", ""]
    width = 44

    def row(label: str, value: str) -> str:
        return f"  {label} ".ljust(width, ".") + f" {value}"

    def section(title: str, keys: list[str], comment: str = "") -> None:
        keys = [k for k in s.only(keys) if k not in s.truth]
        if not keys and not comment:
            return
        lines.append(title)
        for k in keys:
            if k in s.truth:
                continue  # already printed with its absolute value
            if f"{k}I" in s.stated and s.rng.random() < 0.7:
                lines.append(row(long_label(k, formal), s.pair(k)))
            else:
                lines.append(row(long_label(k, formal), s.val(k)))
        if comment:
            lines.append(f"  {comment}")
        lines.append("")

    if s.any(*BODY):
        lines.append("VITALS")
        if s.has("SBP"):
            lines.append(row("Blood pressure", s.bp(" / ")))
        lines += [row(long_label(k), s.val(k)) for k in s.only(BODY) if k not in ("SBP", "DBP")]
        lines.append("")
    section("LEFT VENTRICLE", ventricle("LV") + dimensions("LV"), clinical.lv_comment(s))
    section("RIGHT VENTRICLE", ventricle("RV") + dimensions("RV"), clinical.rv_comment(s))
    section("ATRIA", atrium("LA") + atrium("RA"), clinical.atria_comment(s))
    section("TISSUE CHARACTERISATION", list(TISSUE), clinical.tissue_comment(s))
    section("OTHER", s.remaining())
    extra = clinical.extra_findings(s)
    if extra:
        lines += ["ADDITIONAL"] + [f"  {x}" for x in extra] + [""]
    lines += ["IMPRESSION", *[f"{n}. {x}" for n, x in enumerate(clinical.impression(s), 1)], ""]
    lines += signoff(s, ds)
    return "\n".join(lines)


def _snake(k: str) -> str:
    return abbrev(k).lower().replace(" ", "_")


def key_value_export(s: Sheet) -> str:
    """'key=value' export: either 'lv.edv = 244 ml' or the unit folded into the key ('lv_edv_ml=244')."""
    i = s.ident
    unit_in_key = s.rng.random() < 0.5
    ds = s.pick(("iso", "us"))
    lines = ["# CMR structured export v2", "[patient]",
             f"name={s.phi(i.patient.dicom)}", f"mrn={s.phi(i.mrn)}", f"dob={s.date('dob', ds)}",
             f"sex={'M' if s.case.sex == 'male' else 'F'}", "", "[study]",
             f"study_date={s.date('study', ds)}", f"accession={s.phi(i.accession)}",
             f"operator={s.phi(i.technologist.full)}", f"field_strength={s.case.tesla:g}T", ""]

    def unit_slug(k: str) -> str:
        u = s.unit(k) or ("ftin" if k == "HEIGHT" else "fraction")
        return (u.replace("²", "2").replace("^", "").replace("/", "_").replace("%", "pct")
                .replace(" ", "").lower().strip("_"))

    def kv(k: str) -> str:
        if unit_in_key:
            return f"{_snake(k)}_{unit_slug(k)}={s.num(k)}"
        key = ".".join(abbrev(k).lower().split()) if k in BODY or k in TISSUE else \
            f"{abbrev(k)[:2].lower()}.{abbrev(k)[2:].lower()}"
        return f"{key} = {s.val(k)}"

    groups = [("[vitals]", list(BODY)), ("[lv]", ventricle("LV") + dimensions("LV")),
              ("[rv]", ventricle("RV") + dimensions("RV")), ("[atria]", atrium("LA") + atrium("RA")),
              ("[tissue]", list(TISSUE))]
    for title, keys in groups:
        keys = s.only(keys)
        if keys:
            lines += [title] + [kv(k) for k in keys] + [""]
    lines += ["[report]", f"indication=\"{clinical.indication(s)}\"",
              f"findings=\"{' '.join([clinical.lv_comment(s), clinical.rv_comment(s), clinical.tissue_comment(s)])}\""]
    extra = clinical.extra_findings(s)
    if extra:
        lines.append(f"comment=\"{' '.join(extra)}\"")
    lines.append(f"conclusion=\"{' '.join(clinical.impression(s))}\"")
    lines.append(f"signed_by={s.phi(i.reader.full)}")
    lines.append(f"signed_at={s.date('signed', ds)}T{i.study_time}")
    return "\n".join(lines)


def csv_export(s: Sheet) -> str:
    """'parameter,value,unit' rows (optionally ref_low,ref_high), comments in '#' lines."""
    i = s.ident
    ds = s.pick(("iso", "us"))
    with_ref = s.rng.random() < 0.5
    lines = [f"# {hospital(s)} - CMR quantitative export",
             f"# Patient: {s.phi(i.patient.last_first)} ({s.phi(i.mrn)}), scanned {s.date('study', ds)}",
             f"# Indication: {clinical.indication(s)}",
             "parameter,value,unit" + (",ref_low,ref_high" if with_ref else "")]
    variant = s.rng.randint(0, 2)
    for k in s.only(list(BODY) + ventricle("LV") + ventricle("RV") + dimensions("LV") + dimensions("RV")
                    + atrium("LA") + atrium("RA") + list(TISSUE)):
        label = long_label(k) if variant == 0 else short_label(k, variant)
        row = f"{label.replace(',', ' ')},{s.num(k)},{s.unit(k)}"
        if with_ref:
            r = s.ref_range(k, ",")
            row += f",{r}" if r else ",,"
        lines.append(row)
    lines += [f"# Findings: {clinical.lv_comment(s)} {clinical.rv_comment(s)} {clinical.tissue_comment(s)}"]
    lines += [f"# {x}" for x in clinical.extra_findings(s)]
    lines += [f"# Conclusion: {' '.join(clinical.impression(s))}", f"# Reviewed by {s.phi(i.reader.full)}"]
    return "\n".join(lines)
