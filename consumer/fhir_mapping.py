"""ExtractionRecord -> one FHIR R4 transaction Bundle: an Observation per published value, one for
the diagnosis category, and a Provenance naming the software that asserted them.

Why this shape: Observations are conditional creates keyed by ``<report_id>/<FIELD>`` so a replayed
record never duplicates data; fullUrls and the Provenance id are uuid5 of the record's identity so
the same record always gives the same Bundle; every Observation carries its confidence and an
"AI asserted" security label so downstream users can tell machine output from clinician input.
Only codes, numbers and identifiers go in: no report text, no evidence spans.

Validation, and why it is cheap: every Bundle is validated with the fhir.resources R4B models
before it is returned, but not by building ~350 pydantic models per Bundle (about 20 ms of CPU,
the largest cost of a message). The Bundle is split into its header and its entries. In each part
the values that change from report to report (ids, fullUrls, identifier values, references,
decimals, instants; ``_VARIABLE_PATHS``) are replaced by placeholders of the same FHIR type, and
that template is validated once with ``Bundle.model_validate`` (the whole R4B model: structure,
cardinality, choice types, every constant code, system and display). Later Bundles with the same
template only validate their variable values, each with the pydantic type fhir.resources declares
for that element (``Instant``, ``Decimal``, ``String``, ``Uri``, ``Id`` ...: FHIR's primitive
rules as fhir.resources implements them). A placeholder is present exactly where a value is, and
fhir.resources has no rule that ties one primitive's value to another's, so this accepts exactly
what a full validation accepts. The fast path only ever accepts: anything it cannot prove valid (a
new template, a value of the wrong kind, a null) is validated in full with fhir.resources, whose
verdict and error message stand. Two rules fhir.resources does not check are added: a ``urn:uuid``
reference must name an entry of the Bundle, and the codes of required bindings that we write
(Observation.status, Bundle.type, request.method) must be in their value sets.
"""

from __future__ import annotations

import marshal
import math
import threading
import types
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
    # The shape of each entry built here, apart from its variable values (see _VARIABLE_PATHS):
    # the same shape always gives the same template, so its key is looked up, not recomputed.
    kinds: list[tuple] = []
    has_subject = bool(record.subject_reference)
    for result in record.fields:
        if result.route == "publish" and result.value is not None:
            entries.append(_entry(record, result.key, _field_observation(record, result, effective, issued)))
            kinds.append(("field", result.key, has_subject))
    category = record.category
    if category.route == "publish" and category.value is not None:
        entries.append(_entry(record, CATEGORY_KEY, _category_observation(record, effective, issued)))
        kinds.append(("category", category.value, has_subject))
    if entries:
        provenance_url, provenance = _provenance(record, [e["fullUrl"] for e in entries], issued)
        entries.append({"fullUrl": provenance_url, "resource": provenance, "request": {"method": "PUT", "url": f"Provenance/{provenance['id']}"}})
        kinds.append(("provenance", len(entries) - 1))
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "identifier": {"system": f"{PROJECT_URL}/extraction", "value": record.report_id},
        "type": "transaction",
        "timestamp": issued,
    }
    if entries:
        bundle["entry"] = entries
    _validate(bundle, (_shape(), kinds))
    return bundle


# Everything besides a kind that decides the shape of what build_bundle builds: the module's
# constants and builders. Replacing one (a patch, a reload) makes a new shape, so entries are
# masked and their templates validated again instead of trusting keys learned before.
_SHAPE_NAMES = (
    "AI_ASSERTED", "CATALOG", "UCUM_SYSTEM", "LOINC_SYSTEM", "OBSERVATION_CATEGORY_SYSTEM",
    "OBSERVATION_CATEGORY_DISPLAY", "SECURITY_SYSTEM", "PROVENANCE_AGENT_TYPE_SYSTEM", "DATA_OPERATION_SYSTEM",
    "FIELD_IDENTIFIER_SYSTEM", "SOFTWARE_IDENTIFIER_SYSTEM", "CONFIDENCE_EXTENSION", "CATEGORY_KEY", "CATEGORY_DISPLAY",
    "PROJECT_URL", "REPORT_IDENTIFIER_SYSTEM", "_QUOTED_FIELD_SYSTEM", "_entry", "_common", "_field_observation",
    "_category_observation", "_subject_and_times", "_provenance", "field_identifier", "observation_full_url",
)


def _shape() -> tuple[int, ...]:
    names = globals()
    return tuple(id(names[name]) for name in _SHAPE_NAMES)


def warm_up() -> None:
    """Validate the templates of every field, the category and the Provenance once, at start-up,
    so the first reports do not pay for it (about a second under load)."""
    from schemas.messages import CategoryResult, ModelInfo

    fields = [FieldResult(key=spec.key, value=1.0, unit=spec.unit, samples=[1.0], scores=[], confidence=1.0, route="publish")
              for spec in CATALOG.fields]
    category = CategoryResult(value=CATALOG.categories[0].key, samples=[], confidence=1.0, route="publish")
    record = ExtractionRecord(report_id="warm-up", subject_reference="Patient/warm-up", source_format="text",
                              deidentified_text="", fields=fields, category=category,
                              model=ModelInfo(backend="warm-up"), combiner="published", threshold=0.7, seconds=0.0)
    build_bundle(record.model_copy(update={"subject_reference": None}))
    for count in range(len(fields), -1, -1):  # a Provenance template per number of targets
        build_bundle(record.model_copy(update={"fields": fields[:count]}))


def observation_full_url(report_id: str, key: str) -> str:
    """Deterministic ``urn:uuid`` of the Observation of ``key`` in report ``report_id``."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{report_id}/{key}')}"


def field_identifier(report_id: str, key: str) -> dict[str, str]:
    return {"system": FIELD_IDENTIFIER_SYSTEM, "value": f"{report_id}/{key}"}


def _entry(record: ExtractionRecord, key: str, resource: dict[str, Any]) -> dict[str, Any]:
    condition = f"identifier={_QUOTED_FIELD_SYSTEM}|{quote(_search_escape(f'{record.report_id}/{key}'), safe='/')}"
    return {
        "fullUrl": observation_full_url(record.report_id, key),
        "resource": resource,
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": condition},
    }


_QUOTED_FIELD_SYSTEM = quote(FIELD_IDENTIFIER_SYSTEM, safe=":/")


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
    try:
        spec = CATALOG.field(result.key)
    except KeyError:
        raise MappingError(f"field {result.key!r} is not in the catalog") from None
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


def _validate(bundle: dict[str, Any], kinds: tuple[tuple, list[tuple]] | None = None) -> None:
    """fhir.resources R4B validation of the Bundle (see the module docstring), plus the references
    and required bindings fhir.resources leaves unchecked. Raises MappingError. ``kinds`` (from
    ``build_bundle`` only) names the module's shape and each entry's kind: see
    ``_TemplateValidator.fast_valid``."""
    if not _VALIDATOR.fast_valid(bundle, kinds):
        _full_validation(bundle)
    _check_references(bundle)


def _full_validation(bundle: dict[str, Any]) -> None:
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    from consumer.codecs import validation_summary

    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        raise MappingError(f"Bundle failed FHIR R4B validation: {validation_summary(exc)}") from None
    for part, owner in _parts(bundle):
        _check_bindings(part, owner)


# Where the values that change from one report to the next live, per part of the Bundle ("*" is
# every item of a list). Anything not listed is part of the template: a value that changed there
# would only make a new template, validated in full, never skip a check.
_VARIABLE_PATHS: dict[str, tuple[tuple[str | int, ...], ...]] = {
    "Bundle": (("identifier", "value"), ("timestamp",)),
    "BundleEntry": (("fullUrl",), ("request", "url"), ("request", "ifNoneExist")),
    "Observation": (
        ("extension", 0, "valueDecimal"), ("identifier", 0, "value"), ("subject", "reference"),
        ("effectiveDateTime",), ("issued",), ("valueQuantity", "value"),
    ),
    "Provenance": (
        ("id",), ("target", "*", "reference"), ("recorded",), ("entity", 0, "what", "identifier", "value"),
        ("agent", 0, "who", "identifier", "value"), ("agent", 0, "who", "display"),
    ),
}
# Required bindings of the codes written here (FHIR R4B value sets); fhir.resources checks only
# that a code is a well-formed token.
_REQUIRED_CODES: dict[tuple[str, tuple[str, ...]], frozenset[str]] = {
    ("Bundle", ("type",)): frozenset({"document", "message", "transaction", "transaction-response", "batch",
                                      "batch-response", "history", "searchset", "collection"}),
    ("BundleEntry", ("request", "method")): frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"}),
    ("Observation", ("status",)): frozenset({"registered", "preliminary", "final", "amended", "corrected",
                                             "cancelled", "entered-in-error", "unknown"}),
}
# A valid value of each FHIR primitive type used in a variable path, put in the template instead.
_PLACEHOLDERS: dict[str, Any] = {
    "string": "x", "uri": "urn:x", "url": "urn:x", "canonical": "urn:x", "id": "x", "code": "x",
    "decimal": 0.5, "instant": "2000-01-01T00:00:00+00:00", "dateTime": "2000-01-01T00:00:00+00:00",
}
_MAX_TEMPLATES = 4096
# (path, the steps to its parent or None when a step is "*", the last step), per owner
_PATH_STEPS = {owner: [(path, None if "*" in path else path[:-1], path[-1]) for path in paths]
               for owner, paths in _VARIABLE_PATHS.items()}



def _parts(bundle: dict[str, Any]):
    """(part, owner type): the header (without entries), each entry (without its resource) and
    each entry's resource."""
    yield {k: v for k, v in bundle.items() if k != "entry"}, "Bundle"
    for entry in bundle.get("entry") or ():
        if isinstance(entry, dict):
            yield {k: v for k, v in entry.items() if k != "resource"}, "BundleEntry"
            resource = entry.get("resource")
            if isinstance(resource, dict):
                yield resource, str(resource.get("resourceType"))


def _check_bindings(part: dict[str, Any], owner: str) -> None:
    for (where, path), allowed in _REQUIRED_CODES.items():
        if where != owner:
            continue
        node: Any = part
        for step in path:
            node = node.get(step) if isinstance(node, dict) else None
        if node is not None and node not in allowed:
            raise MappingError(f"{owner}.{'.'.join(path)}: code {node!r} is not in its required value set")


def _check_references(bundle: dict[str, Any]) -> None:
    """In a transaction Bundle a urn:uuid reference must name the fullUrl of one of its entries."""
    entries = bundle.get("entry") or ()
    full_urls = {e.get("fullUrl") for e in entries}
    for index, entry in enumerate(entries):
        resource = entry.get("resource") or {}
        for target in resource.get("target") or ():
            reference = target.get("reference") if isinstance(target, dict) else None
            if isinstance(reference, str) and reference.startswith("urn:uuid:") and reference not in full_urls:
                raise MappingError(f"entry.{index}.resource.target: reference to an entry not in the Bundle")


class _TemplateValidator:
    """Validated templates and the fhir.resources type of each variable path (module docstring)."""

    def __init__(self) -> None:
        self._templates: set[bytes] = set()
        self._types: dict[tuple[str, tuple[str | int, ...]], tuple[Any, Any]] = {}
        # per shape of the module, the template key of each entry kind build_bundle names, once
        # its template was validated
        self._kind_keys: dict[tuple, dict[tuple, bytes]] = {}
        self._lock = threading.Lock()

    def fast_valid(self, bundle: dict[str, Any], shaped: tuple[tuple, list[tuple]] | None = None) -> bool:
        """True when the Bundle is proven valid; False means 'validate it in full', not 'invalid'.

        ``shaped``: only from ``build_bundle``: (the module's shape, a kind per entry), which
        together name everything that decides an entry's template (the builders and constants,
        field key, subject present, number of Provenance targets): an entry whose kind was seen
        has its template key looked up and only its variable values read, instead of masking and
        serializing it again. Its template must still be in the validated set."""
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            return False
        entries = bundle.get("entry")
        if entries is not None and not (isinstance(entries, list) and entries and all(isinstance(e, dict) for e in entries)):
            return False
        kinds = known = None
        if shaped is not None and len(shaped[1]) == len(entries or ()):
            shape, kinds = shaped
            known = self._kind_keys.get(shape) or {}
        values: dict[tuple[int, type, Any], tuple[Any, Any]] = {}
        header_part = {k: v for k, v in bundle.items() if k != "entry"}
        header = known.get(("header",)) if known else None
        if header is not None:
            if not self._collect(header_part, (), values):
                return False
        else:
            header = self._template_key(header_part, (), values)
        if header is None:
            return False
        missing = []
        learned: list[tuple[tuple, bytes]] = []
        for index, entry in enumerate(entries or ()):
            resource = entry.get("resource")
            if not isinstance(resource, dict) or resource.get("resourceType") not in _VARIABLE_PATHS:
                return False
            kind = kinds[index] if kinds is not None else None
            key = known.get(kind) if known else None
            if key is not None:
                if not self._collect(entry, (resource,), values):
                    return False
            else:
                key = self._template_key(entry, (resource,), values)
                if key is None:
                    return False
                if kind is not None:
                    learned.append((kind, key))
            if header + key not in self._templates:
                missing.append(key)
        if not entries and header not in self._templates:
            missing.append(b"")
        for adapter, value in values.values():
            try:
                adapter.validate_python(value)
            except Exception:  # noqa: BLE001 - any failure: let the full validation decide and explain
                return False
        for key in missing:
            # A key is its template: marshal.loads gives back the masked value exactly.
            template = marshal.loads(header)
            if key:
                template["entry"] = [marshal.loads(key)]
            try:
                _full_validation(template)
            except MappingError:
                return False  # invalid: the full validation of the Bundle itself says where
            with self._lock:
                if len(self._templates) >= _MAX_TEMPLATES:
                    self._templates.clear()
                self._templates.add(header + key)
        if kinds is not None and (learned or not known):
            with self._lock:  # every template of this Bundle is now in the validated set
                if len(self._kind_keys) >= 8:  # shapes: one in production
                    self._kind_keys.clear()
                mine = self._kind_keys.setdefault(shape, {})
                if len(mine) >= _MAX_TEMPLATES:
                    mine.clear()
                mine[("header",)] = header
                mine.update(learned)
        return True

    def _collect(self, part: dict[str, Any], resources: tuple, values: dict, undo: list | None = None) -> bool:
        """The variable values of ``part`` (the Bundle header, or an entry with its resource), with
        the validator of their type, into ``values``; with ``undo``, each is also replaced by a
        placeholder of its FHIR type (recorded in ``undo``). False: not fast-path material."""
        owners = [(part, "BundleEntry" if resources else "Bundle")] + [(r, r["resourceType"]) for r in resources]
        types = self._types
        for root, owner in owners:
            for path, parents, last in _PATH_STEPS[owner]:
                if parents is None:  # a path through every item of a list
                    if not self._mask(root, path, owner, path, values, undo):
                        return False
                    continue
                node = root
                try:
                    for step in parents:
                        node = node[step]
                    value = node[last]
                except (KeyError, IndexError):
                    continue  # absent: nothing to mask
                except TypeError:
                    return False
                if value is None or isinstance(value, (dict, list)):
                    return False
                adapter, placeholder = types.get((owner, path)) or self._type(owner, path)
                values[(id(adapter), type(value), value)] = (adapter, value)
                if undo is not None:
                    undo.append((node, last, value))
                    node[last] = placeholder
        return True

    def _template_key(self, part: dict[str, Any], resources: tuple, values: dict) -> bytes | None:
        """``part`` with each variable value replaced by a placeholder of its FHIR type, serialized
        with marshal: fast and type-exact (equal bytes mean equal values, so a key can only miss,
        never confuse two templates). The placeholders are put in place and taken out again. The
        values go to ``values`` with the validator of their type. None: not fast-path material."""
        undo: list[tuple[Any, Any, Any]] = []
        try:
            return marshal.dumps(part) if self._collect(part, resources, values, undo) else None
        except ValueError:  # not plain JSON data
            return None
        finally:
            for node, step, value in reversed(undo):
                node[step] = value

    def _mask(self, node: Any, path: tuple, owner: str, full: tuple, values: dict, undo: list | None) -> bool:
        """Collect the values at ``path`` (``*`` = every list item) with their validators into
        ``values``; with ``undo``, also put placeholders in their place (recorded for undoing).
        False: not fast-path material (a value where a container was expected, or the reverse)."""
        for index, step in enumerate(path[:-1]):
            if step == "*":
                return isinstance(node, list) and all(
                    self._mask(item, path[index + 1 :], owner, full, values, undo) for item in node
                )
            try:
                node = node[step]
            except (KeyError, IndexError):
                return True  # absent: nothing to mask
            except TypeError:
                return False
        last = path[-1]
        try:
            value = node[last]
        except (KeyError, IndexError):
            return True
        except TypeError:
            return False
        if value is None or isinstance(value, (dict, list)):
            return False
        adapter, placeholder = self._type(owner, full)
        values[(id(adapter), type(value), value)] = (adapter, value)
        if undo is not None:
            undo.append((node, last, value))
            node[last] = placeholder
        return True

    def _type(self, owner: str, path: tuple) -> tuple[Any, Any]:
        """The pydantic validator fhir.resources declares for the element at ``path`` of ``owner``
        (read from the R4B model classes), and a placeholder value of that FHIR type."""
        found = self._types.get((owner, path))
        if found is None:
            found = self._types[(owner, path)] = _element_type(owner, path)
        return found


def _element_type(owner: str, path: tuple) -> tuple[Any, Any]:
    import typing

    from fhir.resources.R4B import get_fhir_model_class
    from fhir_core.types import FHIR_PRIMITIVES_MAPS, FhirBase
    from pydantic import TypeAdapter

    cls = get_fhir_model_class(owner)
    annotation: Any = None
    for step in path:
        if isinstance(step, int) or step == "*":
            continue
        fields = {info.alias or name: info for name, info in cls.model_fields.items()}
        annotation = fields[step].annotation
        while typing.get_origin(annotation) in (typing.Union, list, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        if isinstance(annotation, type) and issubclass(annotation, FhirBase):
            cls = annotation.get_model_klass()
    primitive = FHIR_PRIMITIVES_MAPS[annotation]
    return TypeAdapter(annotation, config=cls.model_config), _PLACEHOLDERS[primitive]


_VALIDATOR = _TemplateValidator()
