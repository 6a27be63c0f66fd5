"""FHIR mapping: one valid, deterministic transaction Bundle per record with coded, UCUM-unit
Observations (conditional creates), the AI-asserted label, confidences and a Provenance; no PHI."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from consumer.fhir_mapping import (
    AI_ASSERTED,
    CONFIDENCE_EXTENSION,
    FIELD_IDENTIFIER_SYSTEM,
    UCUM_SYSTEM,
    MappingError,
    build_bundle,
    render_bundle,
    observation_full_url,
)
from extraction.deid import deidentify
from helpers import DEV_DIR
from schemas.catalog import CATALOG
from schemas.messages import CategoryResult, ExtractionRecord, FieldResult, ModelInfo, Score

REPORTS = sorted(DEV_DIR.glob("*.txt"))
EXTRACTED = datetime(2025, 3, 15, 8, 0, tzinfo=timezone.utc)
STUDY = datetime(2025, 3, 14, 9, 30, tzinfo=timezone.utc)
REVIEW_KEYS = {"LVMASS", "RVEF", "ECV"}  # routed to review in the hand-built records


def _record(report: Path, *, category_route: str = "publish", **overrides) -> ExtractionRecord:
    """A record as the pipeline would write it, built by hand from the dev truth."""
    truth = json.loads(report.with_suffix(".json").read_text())
    fields = []
    for key in CATALOG.keys:
        value = truth["fields"][key]
        review = key in REVIEW_KEYS and value is not None
        confidence = 0.55 if review else 0.93
        fields.append(
            FieldResult(
                key=key,
                value=value,
                unit=CATALOG.field(key).unit,
                samples=[value, value, value],
                scores=[Score(name="stability", value=1.0, reason="all samples agree")],
                confidence=confidence,
                route="review" if review else "publish",
            )
        )
    data = {
        "report_id": f"ACC-{report.stem}",
        "subject_reference": f"Patient/example-{report.stem}",
        "effective_time": STUDY,
        "source_format": "hl7v2",
        "deidentified_text": deidentify(report.read_text(encoding="utf-8")),
        "fields": fields,
        "category": CategoryResult(value=truth["CATEGORY"], samples=[truth["CATEGORY"]] * 3, confidence=0.97, route=category_route),
        "model": ModelInfo(backend="local", model="llama-3.2-1b", adapter="cmr-student-v3"),
        "combiner": "published",
        "threshold": 0.7,
        "seconds": 0.4,
        "extracted_at": EXTRACTED,
    }
    data.update(overrides)
    return ExtractionRecord(**data)


def _observations(bundle: dict) -> list[dict]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]


def _by_key(bundle: dict) -> dict[str, dict]:
    return {e["resource"]["identifier"][0]["value"].rsplit("/", 1)[1]: e for e in _observations(bundle)}


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.stem)
def test_bundle_valid_and_complete(report: Path):
    record = _record(report)
    bundle = build_bundle(record)
    Bundle.model_validate(bundle)  # R4B
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"

    published = [f for f in record.fields if f.route == "publish" and f.value is not None]
    observations = _observations(bundle)
    assert len(observations) == len(published) + 1  # + CATEGORY
    assert len(bundle["entry"]) == len(observations) + 1  # + Provenance
    by_key = _by_key(bundle)
    assert set(by_key) == {f.key for f in published} | {"CATEGORY"}
    assert not REVIEW_KEYS & set(by_key)

    for result in published:
        entry = by_key[result.key]
        obs, spec = entry["resource"], CATALOG.field(result.key)
        assert entry["fullUrl"] == observation_full_url(record.report_id, result.key)
        assert obs["status"] == "preliminary"
        assert obs["subject"] == {"reference": record.subject_reference}
        assert obs["effectiveDateTime"] == STUDY.isoformat()
        assert obs["valueQuantity"] == {"value": float(result.value), "unit": spec.unit, "system": UCUM_SYSTEM, "code": spec.ucum}
        codings = obs["code"]["coding"]
        assert codings[-1] == {"system": CATALOG.code_system, "code": result.key, "display": spec.meaning}
        if spec.loinc:
            assert codings[0] == {"system": "http://loinc.org", "code": spec.loinc.code, "display": spec.loinc.display}
        else:
            assert len(codings) == 1
        category = obs["category"][0]["coding"][0]
        assert category["system"] == "http://terminology.hl7.org/CodeSystem/observation-category"
        assert category["code"] == spec.fhir_category
        identifier = {"system": FIELD_IDENTIFIER_SYSTEM, "value": f"{record.report_id}/{result.key}"}
        assert obs["identifier"] == [identifier]
        assert entry["request"] == {"method": "POST", "url": "Observation", "ifNoneExist": f"identifier={identifier['system']}|{identifier['value']}"}
        assert obs["meta"]["security"] == [AI_ASSERTED]
        assert AI_ASSERTED["code"] == "AIAST" and AI_ASSERTED["system"] == "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
        assert obs["extension"] == [{"url": CONFIDENCE_EXTENSION, "valueDecimal": 0.93}]

    category_obs = by_key["CATEGORY"]["resource"]
    value = category_obs["valueCodeableConcept"]["coding"][0]
    assert value["system"] == CATALOG.category_code_system and value["code"] == record.category.value
    assert category_obs["meta"]["security"] == [AI_ASSERTED]

    provenance = bundle["entry"][-1]
    assert provenance["resource"]["resourceType"] == "Provenance"
    assert {t["reference"] for t in provenance["resource"]["target"]} == {e["fullUrl"] for e in observations}
    assert provenance["request"] == {"method": "PUT", "url": f"Provenance/{provenance['resource']['id']}"}
    who = provenance["resource"]["agent"][0]["who"]
    assert who["identifier"]["value"] == "local/llama-3.2-1b/cmr-student-v3"
    assert all(name in who["display"] for name in ("local", "llama-3.2-1b", "cmr-student-v3"))
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in bundle["entry"])
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(bundle["entry"])


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.stem)
def test_no_phi_in_bundle(report: Path):
    bundle_text = json.dumps(build_bundle(_record(report))).lower()
    phi = json.loads(report.with_suffix(".json").read_text())["phi"]
    leaked = [value for value in phi if value.lower() in bundle_text]
    assert not leaked


def test_same_record_same_bundle():
    record = _record(REPORTS[0])
    first = json.dumps(build_bundle(record), sort_keys=True)
    assert json.dumps(build_bundle(record), sort_keys=True) == first
    copy = ExtractionRecord.model_validate_json(record.model_dump_json())
    assert json.dumps(build_bundle(copy), sort_keys=True) == first
    other = json.dumps(build_bundle(_record(REPORTS[0], report_id="ACC-other")), sort_keys=True)
    assert other != first and observation_full_url("ACC-other", "LVEF") in other


def test_category_under_review_is_not_published():
    bundle = build_bundle(_record(REPORTS[1], category_route="review"))
    assert "CATEGORY" not in _by_key(bundle)


def test_without_subject_and_effective_time():
    bundle = build_bundle(_record(REPORTS[2], subject_reference=None, effective_time=None))
    for entry in _observations(bundle):
        assert "subject" not in entry["resource"]
        assert entry["resource"]["effectiveDateTime"] == EXTRACTED.isoformat()


def test_naive_times_are_taken_as_utc():
    bundle = build_bundle(_record(REPORTS[3], effective_time=datetime(2025, 3, 14, 9, 30)))
    Bundle.model_validate(bundle)
    assert _observations(bundle)[0]["resource"]["effectiveDateTime"] == "2025-03-14T09:30:00+00:00"


def test_report_id_escaped_in_condition():
    bundle = build_bundle(_record(REPORTS[4], report_id="A|1,2 x"))
    request = _observations(bundle)[0]["request"]
    assert request["ifNoneExist"].startswith(f"identifier={FIELD_IDENTIFIER_SYSTEM}|A%5C%7C1%5C%2C2%20x/")


def test_nothing_to_publish():
    record = _record(REPORTS[5], category_route="review")
    record = record.model_copy(update={"fields": [f.model_copy(update={"route": "review"}) for f in record.fields]})
    bundle = build_bundle(record)
    assert "entry" not in bundle
    Bundle.model_validate(bundle)


def test_mapping_errors(monkeypatch):
    record = _record(REPORTS[0])
    bad_key = record.model_copy(update={"fields": [*record.fields[:1], record.fields[1].model_copy(update={"key": "LVXYZ"})]})
    with pytest.raises(MappingError, match="LVXYZ"):
        build_bundle(bad_key)
    nan = record.model_copy(update={"fields": [record.fields[0].model_copy(update={"value": math.nan})]})
    with pytest.raises(MappingError, match="HEIGHT"):
        build_bundle(nan)
    bad_category = record.model_copy(update={"category": record.category.model_copy(update={"value": "Myocarditis"})})
    with pytest.raises(MappingError, match="Myocarditis"):
        build_bundle(bad_category)
    import consumer.fhir_mapping as mapping

    monkeypatch.setattr(mapping, "AI_ASSERTED", {**AI_ASSERTED, "rank": 1})  # not a Coding element
    with pytest.raises(MappingError, match="R4B validation.*security.0.rank"):
        build_bundle(record)


def _mutated(bundle: dict, change) -> dict:
    copy = json.loads(json.dumps(bundle))
    change(copy)
    return copy


def _first_observation(bundle: dict) -> dict:
    return _observations(bundle)[0]["resource"]


INVALID_BUNDLES = {
    "decimal value not a number": lambda b: _first_observation(b)["valueQuantity"].update(value="12 ml"),
    "boolean as decimal": lambda b: _first_observation(b)["valueQuantity"].update(value=True),
    "infinite value": lambda b: _first_observation(b)["valueQuantity"].update(value=float("inf")),
    "bad confidence decimal": lambda b: _first_observation(b)["extension"][0].update(valueDecimal="high"),
    "empty reference": lambda b: _first_observation(b)["subject"].update(reference=""),
    "reference not a string": lambda b: _first_observation(b)["subject"].update(reference=42),
    "dangling urn:uuid reference": lambda b: b["entry"][-1]["resource"]["target"].append({"reference": "urn:uuid:0f0f0f0f-0000-4000-8000-000000000000"}),
    "instant without offset": lambda b: _first_observation(b).update(issued="2025-03-15T08:00:00"),
    "instant offset out of range": lambda b: b.update(timestamp="2025-03-15T08:00:00+15:00"),
    "bad dateTime": lambda b: _first_observation(b).update(effectiveDateTime="2025-13-40"),
    "bad provenance id": lambda b: b["entry"][-1]["resource"].update(id="not an id"),
    "unknown status code": lambda b: _first_observation(b).update(status="guessed"),
    "unknown request method": lambda b: b["entry"][0]["request"].update(method="FETCH"),
    "unknown element": lambda b: _first_observation(b)["valueQuantity"].update(precision=2),
    "code with whitespace only": lambda b: _first_observation(b)["code"]["coding"][0].update(code=" "),
}


@pytest.mark.parametrize("name", INVALID_BUNDLES)
def test_full_validation_rejects_invalid_bundles(name):
    """The full validation (templates, and the fallback of any Bundle the fast path cannot prove
    valid) rejects what fhir.resources rejects, plus dangling references and unknown codes."""
    from consumer.fhir_mapping import _validate

    record = _record(REPORTS[0])
    bundle = build_bundle(record)
    bad = _mutated(bundle, INVALID_BUNDLES[name])
    with pytest.raises(MappingError):
        _validate(bad)
    _validate(bundle)


def _variants(report: Path) -> list[ExtractionRecord]:
    base = _record(report, report_id=f"ACC-{report.stem}-x")
    return [
        base,
        _record(report, report_id=f"A|1,2 x\\$/{report.stem} \u00fc", subject_reference=None, effective_time=None),
        _record(report, category_route="review", model=ModelInfo(backend="rules")),
        base.model_copy(update={"fields": [f.model_copy(update={"value": (f.value or 0) * 1e17 + 1e-7, "confidence": 0.7 + 1e-9})
                                           for f in base.fields]}),
    ]


def test_fast_path_gives_the_builders_bytes_and_a_valid_bundle():
    """Many records, two passes (templates learned, then used): the rendered bytes are exactly
    ``orjson.dumps`` of the Bundle the builders write as a dict, and fhir.resources accepts it."""
    import orjson

    from consumer.fhir_mapping import _bundle_dict, _parts, render_bundle

    for _ in range(2):
        for report in REPORTS:
            for record in _variants(report):
                data, entries = render_bundle(record)
                expected = _bundle_dict(*_parts(record))
                assert data == orjson.dumps(expected)
                assert entries == len(expected.get("entry", ()))
                Bundle.model_validate(json.loads(data))


BAD_VALUES = {
    "empty report id": lambda r: r.model_copy(update={"report_id": ""}),
    "report id only a vertical tab": lambda r: r.model_copy(update={"report_id": "\x0b"}),
    "subject only a form feed": lambda r: r.model_copy(update={"subject_reference": "\x0c"}),
    "confidence not a number": lambda r: r.model_copy(update={"fields": [r.fields[0].model_copy(update={"confidence": math.nan})]}),
    "category confidence infinite": lambda r: r.model_copy(update={"category": r.category.model_copy(update={"confidence": math.inf})}),
    "issued offset out of range": lambda r: r.model_copy(update={"extracted_at": datetime(2025, 3, 15, 8, 0, tzinfo=timezone(timedelta(hours=15)))}),
    "effective offset out of range": lambda r: r.model_copy(update={"effective_time": datetime(2025, 3, 15, 8, 0, tzinfo=timezone(timedelta(hours=-15)))}),
}


@pytest.mark.parametrize("name", BAD_VALUES)
def test_bad_variable_values_are_rejected_after_the_templates_are_known(name):
    """The fast path checks every variable value with its fhir.resources type: a record whose
    templates are all known but with one invalid value raises, as a full validation does."""
    from consumer.fhir_mapping import _bundle_dict, _parts, render_bundle

    record = _record(REPORTS[0])
    render_bundle(record)
    render_bundle(record.model_copy(update={"fields": record.fields[:1]}))
    bad = BAD_VALUES[name](record)
    with pytest.raises(MappingError, match="R4B validation"):
        render_bundle(bad)
    with pytest.raises(Exception):
        Bundle.model_validate(_bundle_dict(*_parts(bad)))
    render_bundle(record)  # nothing learned from the bad one


def test_uuid5_is_the_standard_one():
    import random
    import uuid

    from consumer.fhir_mapping import _NAMESPACE, _uuid5

    rng = random.Random(5)
    names = ["", "a", "ACC-1/LVEF", "\u00fc/\u4e2d|,$\\"] + ["".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(40)))
                                                        for _ in range(2000)]
    for name in names:
        assert _uuid5(name) == str(uuid.uuid5(_NAMESPACE, name))


def test_a_patched_builder_constant_is_validated_again(monkeypatch):
    import consumer.fhir_mapping as mapping

    record = _record(REPORTS[0])
    render_bundle(record)
    monkeypatch.setattr(mapping, "OBSERVATION_CATEGORY_DISPLAY", {"vital-signs": "Vital Signs", "imaging": ""})
    with pytest.raises(MappingError, match="R4B validation"):  # an empty string is not a FHIR string
        render_bundle(record)


def test_unknown_codes_from_the_record_raise():
    record = _record(REPORTS[0])
    build_bundle(record)
    unknown_field = record.model_copy(update={"fields": [record.fields[0].model_copy(update={"key": "LVFOO"})]})
    with pytest.raises(MappingError, match="LVFOO"):
        build_bundle(unknown_field)
    unknown_category = record.model_copy(update={"category": record.category.model_copy(update={"value": "Amyloid-ish"})})
    with pytest.raises(MappingError, match="Amyloid-ish"):
        build_bundle(unknown_category)
    bad_time = record.model_copy(update={"extracted_at": datetime(2025, 3, 15, 8, 0, tzinfo=timezone(timedelta(hours=15)))})
    with pytest.raises(MappingError, match="R4B validation"):
        build_bundle(bad_time)
