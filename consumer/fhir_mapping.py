"""ExtractionRecord -> one FHIR R4 transaction Bundle: an Observation per published value, one for
the diagnosis category, and a Provenance naming the software that asserted them.

Why this shape: Observations are conditional creates keyed by ``<report_id>/<FIELD>`` so a replayed
record never duplicates data; fullUrls and the Provenance id are uuid5 of the record's identity so
the same record always gives the same Bundle; every Observation carries its confidence and an
"AI asserted" security label so downstream users can tell machine output from clinician input.
Only codes, numbers and identifiers go in: no report text, no evidence spans.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from consumer.codecs import PROJECT_URL, REPORT_IDENTIFIER_SYSTEM
from schemas.catalog import CATALOG
from schemas.messages import ExtractionRecord, FieldResult

UCUM_SYSTEM = "http://unitsofmeasure.org"
LOINC_SYSTEM = "http://loinc.org"
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
OBSERVATION_CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "imaging": "Imaging"}
SECURITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
AI_ASSERTED = {"system": SECURITY_SYSTEM, "code": "AIAST", "display": "Artificial Intelligence asserted"}
PROVENANCE_AGENT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"

FIELD_IDENTIFIER_SYSTEM = f"{PROJECT_URL}/report-field"
SOFTWARE_IDENTIFIER_SYSTEM = f"{PROJECT_URL}/software"
CONFIDENCE_EXTENSION = f"{PROJECT_URL}/StructureDefinition/extraction-confidence"
CATEGORY_KEY = "CATEGORY"
CATEGORY_DISPLAY = "Diagnosis category from cardiac MRI report"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, PROJECT_URL)


class MappingError(ValueError):
    """The record cannot become a valid FHIR Bundle (unknown field or category, bad value, or the
    Bundle failed R4B validation). The message names fields and FHIR paths, never report text."""


def build_bundle(record: ExtractionRecord) -> dict[str, Any]:
    """One transaction Bundle for one record (see module docstring); validated with the
    fhir.resources R4B models before it is returned. A record with nothing to publish gives a
    Bundle without entries (FHIR forbids empty arrays), which callers may skip."""
    effective = _instant(record.effective_time or record.extracted_at)
    issued = _instant(record.extracted_at)
    entries: list[dict[str, Any]] = []
    for result in record.fields:
        if result.route == "publish" and result.value is not None:
            entries.append(_entry(record, result.key, _field_observation(record, result, effective, issued)))
    category = record.category
    if category.route == "publish" and category.value is not None:
        entries.append(_entry(record, CATEGORY_KEY, _category_observation(record, effective, issued)))
    if entries:
        provenance_url, provenance = _provenance(record, [e["fullUrl"] for e in entries], issued)
        entries.append({"fullUrl": provenance_url, "resource": provenance, "request": {"method": "PUT", "url": f"Provenance/{provenance['id']}"}})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "identifier": {"system": f"{PROJECT_URL}/extraction", "value": record.report_id},
        "type": "transaction",
        "timestamp": issued,
    }
    if entries:
        bundle["entry"] = entries
    _validate(bundle)
    return bundle


def observation_full_url(report_id: str, key: str) -> str:
    """Deterministic ``urn:uuid`` of the Observation of ``key`` in report ``report_id``."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{report_id}/{key}')}"


def field_identifier(report_id: str, key: str) -> dict[str, str]:
    return {"system": FIELD_IDENTIFIER_SYSTEM, "value": f"{report_id}/{key}"}


def _entry(record: ExtractionRecord, key: str, resource: dict[str, Any]) -> dict[str, Any]:
    identifier = field_identifier(record.report_id, key)
    condition = f"identifier={quote(identifier['system'], safe=':/')}|{quote(_search_escape(identifier['value']), safe='/')}"
    return {
        "fullUrl": observation_full_url(record.report_id, key),
        "resource": resource,
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": condition},
    }


def _search_escape(value: str) -> str:
    """FHIR search escaping of a token value: backslash before \\ | , $."""
    for char in ("\\", "|", ",", "$"):
        value = value.replace(char, "\\" + char)
    return value


def _common(record: ExtractionRecord, key: str, confidence: float, fhir_category: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "meta": {"security": [dict(AI_ASSERTED)]},
        "extension": [{"url": CONFIDENCE_EXTENSION, "valueDecimal": round(float(confidence), 4)}],
        "identifier": [field_identifier(record.report_id, key)],
        "status": "preliminary",
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": fhir_category, "display": OBSERVATION_CATEGORY_DISPLAY[fhir_category]}]}
        ],
    }


def _field_observation(record: ExtractionRecord, result: FieldResult, effective: str, issued: str) -> dict[str, Any]:
    if result.key not in CATALOG.keys:
        raise MappingError(f"field {result.key!r} is not in the catalog")
    spec = CATALOG.field(result.key)
    value = float(result.value)  # type: ignore[arg-type]  # published values are not None
    if not math.isfinite(value):
        raise MappingError(f"field {result.key}: value is not a finite number")
    coding = [{"system": LOINC_SYSTEM, "code": spec.loinc.code, "display": spec.loinc.display}] if spec.loinc else []
    coding.append({"system": CATALOG.code_system, "code": spec.key, "display": spec.meaning})
    resource = _common(record, spec.key, result.confidence, spec.fhir_category)
    resource["code"] = {"coding": coding, "text": spec.meaning}
    _subject_and_times(resource, record, effective, issued)
    resource["valueQuantity"] = {"value": value, "unit": spec.unit, "system": UCUM_SYSTEM, "code": spec.ucum}
    return resource


def _category_observation(record: ExtractionRecord, effective: str, issued: str) -> dict[str, Any]:
    value = record.category.value
    spec = next((c for c in CATALOG.categories if c.key == value), None)
    if spec is None:
        raise MappingError(f"category {value!r} is not in the catalog")
    resource = _common(record, CATEGORY_KEY, record.category.confidence, "imaging")
    resource["code"] = {"coding": [{"system": CATALOG.code_system, "code": CATEGORY_KEY, "display": CATEGORY_DISPLAY}], "text": CATEGORY_DISPLAY}
    _subject_and_times(resource, record, effective, issued)
    resource["valueCodeableConcept"] = {"coding": [{"system": CATALOG.category_code_system, "code": spec.key, "display": spec.display}], "text": spec.display}
    return resource


def _subject_and_times(resource: dict[str, Any], record: ExtractionRecord, effective: str, issued: str) -> None:
    if record.subject_reference:
        resource["subject"] = {"reference": record.subject_reference}
    resource["effectiveDateTime"] = effective
    resource["issued"] = issued


def _provenance(record: ExtractionRecord, targets: list[str], recorded: str) -> tuple[str, dict[str, Any]]:
    """Provenance of the whole extraction. Its id includes the model identity so a re-extraction by
    another model adds a Provenance instead of rewriting the earlier one (PUT keeps replays idempotent)."""
    model = record.model
    software = "/".join([model.backend, model.model or "-", model.adapter or "-"])
    provenance_id = str(uuid.uuid5(_NAMESPACE, f"{record.report_id}/Provenance/{software}"))
    described = f"cmrx extractor: backend {model.backend}, model {model.model or 'none'}, adapter {model.adapter or 'none'}"
    resource = {
        "resourceType": "Provenance",
        "id": provenance_id,
        "target": [{"reference": url} for url in targets],
        "recorded": recorded,
        "activity": {"coding": [{"system": DATA_OPERATION_SYSTEM, "code": "CREATE", "display": "create"}]},
        "agent": [
            {
                "type": {"coding": [{"system": PROVENANCE_AGENT_TYPE_SYSTEM, "code": "assembler", "display": "Assembler"}]},
                "who": {"identifier": {"system": SOFTWARE_IDENTIFIER_SYSTEM, "value": software}, "display": described},
            }
        ],
        "entity": [{"role": "source", "what": {"identifier": {"system": REPORT_IDENTIFIER_SYSTEM, "value": record.report_id}}}],
    }
    return f"urn:uuid:{provenance_id}", resource


def _instant(value: datetime) -> str:
    """FHIR instants need an offset; a naive time (HL7 without offset) is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


def _validate(bundle: dict[str, Any]) -> None:
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    from consumer.codecs import validation_summary

    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        raise MappingError(f"Bundle failed FHIR R4B validation: {validation_summary(exc)}") from None
