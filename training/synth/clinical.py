"""Disease prose: indications, qualitative findings, non-field numbers and impressions.

The sentences say what a reader of a real report would expect for each diagnosis, and carry the
numbers that are not fields (LVOT gradient, scar extent, flows, regurgitant fractions, leaflet
displacement, PA diameter, stress and prior values) through ``Sheet.distract`` so that a test can
prove none of them is ever a truth value of a field it could be confused with.
"""

from __future__ import annotations

import random
import re

from .sheet import Sheet

TERRITORY_WORDS = {
    "LAD": ("left anterior descending (LAD)", "the mid and apical anterior wall, anteroseptum and apex"),
    "RCA": ("right coronary artery (RCA)", "the basal and mid inferior wall and basal inferoseptum"),
    "LCx": ("circumflex (LCx)", "the basal and mid inferolateral and anterolateral walls"),
}
# Reference (mu) of the indexed volumes used for the size words, (male, female).
_NORMAL_EDVI = {"LV": (75, 68), "RV": (82, 71)}

EF_CONFUSABLE = ("LVEF", "RVEF", "ECV", "HCT")
LENGTH_CONFUSABLE = ("LVEDD", "LVESD", "RVEDD", "RVESD", "LAL2CH", "LAL4CH", "RAL2CH", "RAL4CH")


def size_word(s: Sheet, side: str) -> str:
    mu = _NORMAL_EDVI[side][0 if s.case.sex == "male" else 1]
    ratio = s.values[f"{side}EDVI"] / mu
    if ratio > 1.55:
        return "severely dilated"
    if ratio > 1.3:
        return "moderately dilated"
    if ratio > 1.12:
        return "mildly dilated"
    if ratio < 0.78:
        return "small"
    return "normal in size"


def function_word(s: Sheet, side: str) -> str:
    ef = s.values[f"{side}EF"]
    cut = (50, 40, 30) if side == "LV" else (45, 38, 30)
    if ef < cut[2]:
        return "severely reduced"
    if ef < cut[1]:
        return "moderately reduced"
    if ef < cut[0]:
        return "mildly reduced"
    if side == "LV" and ef > 72:
        return "hyperdynamic"
    return "normal"


def indication(s: Sheet) -> str:
    c = s.case
    options = {
        "CAD": ["Known coronary artery disease with prior PCI; viability assessment before possible revascularisation.",
                "Exertional chest pain with an equivocal exercise test. Stress perfusion requested.",
                f"Prior {c.extras['territory']} infarction; assess scar burden and LV function.",
                "Ischemic cardiomyopathy on echocardiography. Viability?"],
        "HCM": ["Left ventricular hypertrophy on echocardiogram; family history of sudden cardiac death.",
                "Known hypertrophic cardiomyopathy, pre-myectomy planning; assess LVOT and fibrosis burden.",
                "Abnormal ECG with deep T-wave inversion. Query cardiomyopathy.",
                "Screening of a first-degree relative of a patient with HCM."],
        "DCM": ["New heart failure with severely reduced EF; unobstructed coronary arteries on angiography.",
                "Dilated LV on echocardiogram. Family history of cardiomyopathy.",
                "LBBB and reduced ejection fraction. Aetiology of LV dysfunction?",
                "Heart failure follow-up on guideline-directed therapy; reassess LV size and function."],
        "Ebstein": ["Congenital heart disease follow-up (Ebstein anomaly). Assess RV size and function before tricuspid surgery.",
                    "Adult congenital clinic referral: right heart enlargement and a history of WPW.",
                    "Known Ebstein anomaly, increasing exercise intolerance.",
                    "Cyanosis on exertion; echocardiogram suggests apical displacement of the tricuspid valve."],
        "PAH": ["Known idiopathic pulmonary arterial hypertension on dual oral therapy. Assess RV size and function.",
                "Progressive dyspnoea with elevated RVSP on echocardiogram; precapillary pulmonary hypertension on catheterisation.",
                "Pulmonary arterial hypertension (connective tissue disease associated); RV assessment before therapy escalation.",
                "Follow-up of pulmonary arterial hypertension on prostacyclin therapy."],
    }
    return s.pick(options[c.category])


def technique(s: Sheet) -> str:
    scanner = s.pick(("Siemens MAGNETOM Sola", "Philips Ingenia", "GE SIGNA Artist", "Siemens MAGNETOM Vida"))
    field = "3T" if s.case.tesla == 3.0 else "1.5T"
    agent = s.pick(("gadobutrol 0.15 mmol/kg", "gadoterate meglumine 0.1 mmol/kg", "gadobutrol 0.1 mmol/kg"))
    return s.pick((
        f"{field} {scanner}. Breath-hold balanced SSFP cines (long axis and short-axis stack), native and post-contrast T1 mapping, PSIR late enhancement after {agent}.",
        f"Performed on a {field} {scanner} with ECG gating. Cine SSFP in 2-, 3- and 4-chamber views and a contiguous short-axis stack; LGE 10 minutes after {agent}.",
        f"{field}, cine SSFP (SAX, 2CH, 3CH, 4CH), MOLLI T1 maps, LGE after {agent}. No complications.",
    ))


def lv_comment(s: Sheet) -> str:
    c = s.case
    x = c.extras
    size, fn = size_word(s, "LV"), function_word(s, "LV")
    if c.category == "CAD":
        terr, segs = TERRITORY_WORDS[x["territory"]]
        return s.pick((
            f"Regional wall motion abnormality: akinesis of {segs}, with hypokinesis of the adjacent segments. Remote myocardium contracts normally.",
            f"The LV is {size} with {fn} systolic function and regional dysfunction in the {terr} territory.",
            f"Hypokinesis to akinesis of {segs}; the remaining segments are normal.",
        ))
    if c.category == "HCM":
        sentence = s.pick((
            "Non-dilated, hyperdynamic LV with asymmetric hypertrophy of the interventricular septum.",
            "Asymmetric septal hypertrophy, most marked in the basal and mid anteroseptum, sparing the inferolateral wall.",
            "Marked septal hypertrophy with a small cavity at end-systole (near cavity obliteration).",
        ))
        if s.rng.random() < 0.65:
            g = s.distract(x["lvot_gradient"], 0, ("SBP", "DBP"), "LVOT gradient (mmHg) is not a blood pressure.")
            sentence += s.pick((
                f" Systolic anterior motion of the anterior mitral leaflet with LVOT flow acceleration (estimated peak gradient {g} mmHg).",
                f" SAM with LVOT obstruction, peak gradient approximately {g} mmHg.",
            ))
        return sentence
    if c.category == "DCM":
        sentence = s.pick((
            f"The LV is {size} and spherical with global hypokinesis, no regional (coronary) pattern; the walls are thin.",
            f"Diffuse hypokinesis of a {size} left ventricle, dyssynchronous septal motion consistent with LBBB.",
            f"{size.capitalize()} LV with {fn} global systolic function.",
        ))
        if s.has("LVEF") and s.rng.random() < 0.6:
            prior_date = s.date("prior", s.pick(("us", "iso", "long")))
            sentence += f" LVEF {s.val('LVEF')} (previously {s.prior('LVEF')}% on the study of {prior_date})."
        return sentence
    return s.pick((
        "The LV is small and underfilled with preserved systolic function; paradoxical septal motion.",
        "Normal LV systolic function. The interventricular septum is flattened in systole.",
        f"LV {size} with {fn} systolic function; D-shaped septum.",
    )) if c.category == "PAH" else s.pick((
        "The LV is small-normal in size with preserved systolic function; paradoxical septal motion from RV volume load.",
        f"LV {size}, {fn} systolic function.",
    ))


def rv_comment(s: Sheet) -> str:
    c = s.case
    x = c.extras
    size, fn = size_word(s, "RV"), function_word(s, "RV")
    if c.category == "Ebstein":
        parts = [s.pick((f"The functional RV is {size} with {fn} systolic function.",
                         f"{size.capitalize()} right ventricle, {fn} function."))]
        if s.rng.random() < 0.7:
            mm = s.distract(x["leaflet_mm"], 0, LENGTH_CONFUSABLE, "Septal leaflet displacement (mm) is not a field.", 0.1)
            parts.append(f"The septal tricuspid leaflet is apically displaced by {mm} mm, with a large sail-like anterior leaflet.")
        if s.rng.random() < 0.5:
            ml = s.distract(x["atrialized_ml"], 0, ("RAV", "RVEDV", "RVESV", "LAV", "RVSV", "LVSV"),
                            "Atrialized RV volume (ml) is not a field.")
            parts.append(f"Atrialised portion of the RV approx. {ml} ml.")
        if s.rng.random() < 0.6:
            rf = s.distract(x["tr_rf"], 0, EF_CONFUSABLE, "Tricuspid regurgitant fraction (%) is not a field.")
            parts.append(f"Severe tricuspid regurgitation (regurgitant fraction {rf}%).")
        return " ".join(parts)
    if c.category == "PAH":
        parts = [s.pick((f"{size.capitalize()} and hypertrophied RV with {fn} systolic function; septal flattening.",
                         f"The RV is {size} with free-wall hypertrophy and {fn} systolic function."))]
        if s.rng.random() < 0.6:
            mm = s.distract(x["mpa_mm"], 0, LENGTH_CONFUSABLE, "Main PA diameter (mm) is not a field.", 0.1)
            parts.append(f"Main pulmonary artery dilated ({mm} mm).")
        if s.rng.random() < 0.35:
            rf = s.distract(x["tr_rf"], 0, EF_CONFUSABLE, "Tricuspid regurgitant fraction (%) is not a field.")
            parts.append(f"Moderate tricuspid regurgitation, regurgitant fraction {rf}%.")
        return " ".join(parts)
    return s.pick((f"RV {size} with {fn} systolic function.", "Normal RV size and systolic function."
                   if size == "normal in size" and fn == "normal" else f"The right ventricle is {size}; {fn} function."))


def atria_comment(s: Sheet) -> str:
    cat = s.case.category
    return {
        "CAD": s.pick(("Mild left atrial enlargement. Right atrium normal.", "Atria normal in size.")),
        "HCM": s.pick(("Moderately dilated left atrium.", "Left atrial enlargement; RA normal.")),
        "DCM": s.pick(("Dilated left atrium; right atrium mildly enlarged.", "Biatrial enlargement.")),
        "Ebstein": s.pick(("Massively dilated right atrium, including the atrialised RV.", "Severely enlarged right atrium.")),
        "PAH": s.pick(("Dilated right atrium. Left atrium small.", "RA enlargement; small LA.")),
    }[cat]


def tissue_comment(s: Sheet) -> str:
    c = s.case
    x = c.extras
    if c.category == "CAD":
        terr, segs = TERRITORY_WORDS[x["territory"]]
        text = s.pick((
            f"Subendocardial late gadolinium enhancement of {segs}, consistent with prior infarction in the {terr} territory. No microvascular obstruction. No LV thrombus.",
            f"Infarct-pattern LGE in the {terr} territory, more than half of the wall thickness in most affected segments.",
        ))
        if s.rng.random() < 0.4:
            pct = s.distract(x["lge_pct"], 0, EF_CONFUSABLE, "Scar/LGE extent (% of LV mass) is not a field.")
            text += f" Scar burden approximately {pct}% of LV mass."
        return text
    if c.category in ("HCM", "DCM"):
        text = s.pick((
            "Patchy mid-wall LGE in the hypertrophied septum and at both RV insertion points." if c.category == "HCM"
            else "Linear mid-wall LGE in the basal to mid septum (non-ischemic pattern).",
            "No subendocardial or coronary-pattern enhancement; mid-wall fibrosis as described.",
        ))
        if s.rng.random() < 0.5:
            pct = s.distract(x["lge_pct"], 0, EF_CONFUSABLE, "Scar/LGE extent (% of LV mass) is not a field.")
            text += f" LGE estimated at about {pct}% of LV mass."
        return text
    if c.category == "PAH":
        return "Focal LGE at the superior and inferior RV insertion points, typical of RV pressure overload. No LV scar."
    return "No myocardial late enhancement of the LV. Faint LGE of the atrialised RV wall."


def extra_findings(s: Sheet) -> list[str]:
    """Disease-specific sentences full of non-field numbers (stress, flows, shunts, pressures)."""
    c = s.case
    x = c.extras
    out: list[str] = []
    if c.category == "CAD" and s.rng.random() < 0.55:
        stress_hr = s.distract(x["stress_hr"], 0, ("BHR",), "Stress values (HR/BP) are distractors; the rest values are the truth.")
        rest = f"Rest HR {s.num('BHR')} bpm, peak" if s.has("BHR") else "Peak"
        text = f"Adenosine stress perfusion (140 mcg/kg/min). {rest} stress HR {stress_hr} bpm"
        if s.rng.random() < 0.6:
            ssbp = s.distract(x["stress_sbp"], 0, ("SBP", "DBP"), "")
            sdbp = s.distract(x["stress_dbp"], 0, ("DBP", "SBP"), "")
            text += (f"; rest BP {s.bp()}, stress BP {ssbp}/{sdbp} mmHg" if s.has("SBP")
                     else f"; BP at peak stress {ssbp}/{sdbp} mmHg")
        out.append(text + f". Inducible perfusion defect in the {x['territory']} territory.")
    if c.category in ("DCM", "HCM") and s.rng.random() < 0.35:
        rf = s.distract(x["mr_rf"], 0, EF_CONFUSABLE, "Mitral regurgitant fraction (%) is not a field.")
        out.append(f"Mitral regurgitation with a regurgitant fraction of {rf}%.")
    if c.category == "Ebstein" and s.rng.random() < 0.5:
        q = s.distract(x["qpqs"], 1, ("BSA",), "Qp:Qs is not a field.")
        out.append(f"Small secundum ASD with left-to-right flow, Qp:Qs {q}.")
    if c.category == "PAH" and s.rng.random() < 0.5:
        rvsp = s.distract(x["rvsp"], 0, ("SBP", "DBP"), "Echo RVSP / PA pressures (mmHg) are not blood pressure.")
        mpap = s.distract(x["mpap"], 0, ("SBP", "DBP"), "")
        out.append(f"For reference, echo RVSP {rvsp} mmHg; RHC mean PAP {mpap} mmHg.")
    if s.rng.random() < 0.3:
        ao = s.distract(x["ao_flow"], 0, ("LVSV", "RVSV", "LVEDV", "LVESV"), "Phase-contrast flow volumes are not fields.")
        pa = s.distract(x["pa_flow"], 0, ("RVSV", "LVSV", "RVEDV", "RVESV"), "")
        out.append(f"Phase-contrast flow: aortic forward flow {ao} ml/beat, pulmonary forward flow {pa} ml/beat.")
    return out


def impression(s: Sheet) -> list[str]:
    """One to three impression items naming the diagnosis, worded differently each time."""
    c = s.case
    x = c.extras
    fn = function_word(s, "LV")
    ef = f" (LVEF {s.val('LVEF')})" if s.has("LVEF") and s.rng.random() < 0.5 else ""
    if c.category == "CAD":
        terr = x["territory"]
        main = s.pick((
            f"Chronic myocardial infarction in the {terr} territory with {fn} LV systolic function{ef}, consistent with ischemic cardiomyopathy.",
            f"Ischaemic cardiomyopathy: prior {terr} infarction{ef}.",
            f"Coronary artery disease with infarct scar in the {terr} territory; LV function {fn}{ef}.",
            f"Findings in keeping with ischemic heart disease (CAD), {terr} territory.",
        ))
        extra = s.pick(("Limited viability in the affected segments.", "Viable myocardium in the remaining segments.",
                        "No LV thrombus."))
    elif c.category == "HCM":
        main = s.pick((
            "Findings consistent with hypertrophic cardiomyopathy, asymmetric septal phenotype.",
            f"Hypertrophic cardiomyopathy (HCM) with {fn} LV function{ef}.",
            "Phenotype of HCM with obstructive physiology.",
            "Asymmetric septal hypertrophy in keeping with hypertrophic cardiomyopathy.",
        ))
        extra = s.pick(("Patchy mid-wall fibrosis.", "Left atrial enlargement.", "No apical aneurysm."))
    elif c.category == "DCM":
        main = s.pick((
            f"Non-ischemic dilated cardiomyopathy with {fn} LV systolic function{ef}.",
            f"Dilated cardiomyopathy{ef}.",
            "Features of a dilated cardiomyopathy (DCM) without an infarct pattern.",
            f"Dilated, {fn} left ventricle consistent with DCM.",
        ))
        extra = s.pick(("Septal mid-wall fibrosis, a non-ischemic pattern associated with adverse prognosis.",
                        "No LV thrombus.", "Functional mitral regurgitation."))
    elif c.category == "Ebstein":
        main = s.pick((
            "Ebstein anomaly of the tricuspid valve with severe tricuspid regurgitation.",
            "Ebstein malformation with a dilated functional right ventricle.",
            "Findings consistent with Ebstein's anomaly.",
            "Apically displaced septal tricuspid leaflet: Ebstein anomaly.",
        ))
        extra = s.pick(("Massive right atrial dilatation.", "Interatrial communication with shunting.",
                        "Preserved LV function."))
    else:
        main = s.pick((
            "RV dilatation, hypertrophy and systolic dysfunction with septal flattening, consistent with RV pressure overload in known pulmonary arterial hypertension.",
            "Findings consistent with pulmonary arterial hypertension (PAH) with RV pressure overload.",
            "Pressure-loaded, failing right ventricle in PAH.",
            "Pulmonary arterial hypertension with RV remodelling.",
        ))
        extra = s.pick(("Dilated main pulmonary artery; RV insertion point fibrosis.", "Small, underfilled LV.",
                        "Right atrial enlargement."))
    return [main, extra] if s.rng.random() < 0.75 else [main]


_WORD = re.compile(r"\b[a-z][A-Za-z]{4,}")


def typo(text: str, rng: random.Random, rate: float = 0.12) -> str:
    """Word-level typos (swap, drop, double a letter) in lower-case words of 5+ letters; numbers and
    capitalised words (names, months: planted PHI) stay intact."""
    def spoil(m: re.Match[str]) -> str:
        w = m.group(0)
        if rng.random() >= rate:
            return w
        i = rng.randint(1, len(w) - 2)
        kind = rng.choice(("swap", "drop", "double"))
        if kind == "swap":
            return w[:i] + w[i + 1] + w[i] + w[i + 2:]
        if kind == "drop":
            return w[:i] + w[i + 1:]
        return w[:i] + w[i] + w[i:]
    return _WORD.sub(spoil, text)
