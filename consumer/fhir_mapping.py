"""ExtractionRecord -> one FHIR R4 transaction Bundle: an Observation per published value, one for
the diagnosis category, and a Provenance naming the software that asserted them.

Why this shape: Observations are conditional creates keyed by ``<report_id>/<FIELD>`` so a replayed
record never duplicates data; fullUrls and the Provenance id are uuid5 of the record's identity so
the same record always gives the same Bundle; every Observation carries its confidence and an
"AI asserted" security label so downstream users can tell machine output from clinician input.
Only codes, numbers and identifiers go in: no report text, no evidence spans.

Validation, and why it is cheap: every Bundle is validated with the fhir.resources R4B models
before it is returned, but not by building ~350 pydantic models per Bundle (about 20 ms of CPU,
the largest cost of a message). Each part of a Bundle (its header, each entry with its resource)
is written by one builder from a few named variables: the values that change from report to
report (ids, fullUrls, identifier values, references, decimals, instants). Everything else is
decided by the part's kind (field key, subject present or not, category value, number of
Provenance targets) and the module's constants. The first time a kind is seen its builder is run
twice: once with a placeholder of the right FHIR type in every variable (the type is read from
the fhir.resources model at the variable's path), and that template, with the header, is
validated with ``Bundle.model_validate`` (the whole R4B model: structure, cardinality, choice
types, every constant code, system and display) and the required bindings below; once with a
unique marker in every variable, serialized with orjson and cut at the markers into byte
fragments. A Bundle is then the fragments with its own variable values, each serialized with
orjson, in between: the same bytes as ``orjson.dumps`` of the builders' dict (JSON serialization
of a dict is the serialization of its keys and values, in order). Each variable value is validated
with the pydantic type fhir.resources declares for its element (``Instant``, ``Decimal``,
``String``, ``Uri``, ``Id`` ...: FHIR's primitive rules as fhir.resources implements them), all
the values of one type in one call; a number that passed before is not checked again (the check
is a pure function of the value). A placeholder is present exactly where a value is, and
fhir.resources has no rule that ties one primitive's value to another's, so this accepts exactly
what a full validation accepts. The fast path only ever accepts: anything it cannot prove valid (a
template that failed, a value that failed) is built as a dict and validated in full with
fhir.resources, whose verdict and error message stand. Two rules fhir.resources does not check are
added: a ``urn:uuid`` reference must name an entry of the Bundle, and the codes of required
bindings that we write (Observation.status, Bundle.type, request.method) must be in their value
sets.
"""

from __future__ import annotations

import hashlib
import math
import threading
import types
import uuid
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import quote

import orjson

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
    """One transaction Bundle for one record, as a dict (see ``render_bundle``)."""
    return orjson.loads(render_bundle(record)[0])


def render_bundle(record: ExtractionRecord) -> tuple[bytes, int]:
    """One transaction Bundle for one record as compact JSON (the bytes ``orjson.dumps`` gives
    for it), validated with the fhir.resources R4B models first (module docstring), and its
    number of entries. A record with nothing to publish gives a Bundle without entries (FHIR
    forbids empty arrays), which callers may skip."""
    return _RENDERER.render(record)


def observation_full_url(report_id: str, key: str) -> str:
    """Deterministic ``urn:uuid`` of the Observation of ``key`` in report ``report_id``."""
    return "urn:uuid:" + _uuid5(f"{report_id}/{key}")


def field_identifier(report_id: str, key: str) -> dict[str, str]:
    return {"system": FIELD_IDENTIFIER_SYSTEM, "value": f"{report_id}/{key}"}


_NAMESPACE_SHA1 = hashlib.sha1(_NAMESPACE.bytes)


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))`` without the UUID object (the namespace is hashed once)."""
    digest = _NAMESPACE_SHA1.copy()
    digest.update(name.encode("utf-8"))
    raw = bytearray(digest.digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _search_escape(value: str) -> str:
    """FHIR search escaping of a token value: backslash before \\ | , $."""
    for char in ("\\", "|", ",", "$"):
        if char in value:
            value = value.replace(char, "\\" + char)
    return value


def _condition_part(value: str) -> str:
    """One part of an ``ifNoneExist`` token value, search-escaped and percent-encoded. Both are
    per character and leave ``/`` alone, so ``part(a) + "/" + part(b) == part(a + "/" + b)``."""
    return quote(_search_escape(value), safe="/")


_QUOTED_FIELD_SYSTEM = quote(FIELD_IDENTIFIER_SYSTEM, safe=":/")


def _instant(value: datetime) -> str:
    """FHIR instants need an offset; a naive time (HL7 without offset) is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


# ------------------------------------------------------------------------------------- builders
# Each builder writes one part of the Bundle from ``v``, its variable values by name (each name
# once). What is not in ``v`` is decided by the part's kind and the module's constants.


def _header(v: dict[str, Any], entries: Any) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "identifier": {"system": f"{PROJECT_URL}/extraction", "value": v["bundle_id"]},
        "type": "transaction",
        "timestamp": v["timestamp"],
    }
    if entries is not None:
        bundle["entry"] = entries
    return bundle


def _observation(key: str, fhir_category: str, has_subject: bool, v: dict[str, Any],
                 code: dict[str, Any], value: tuple[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {"security": [dict(AI_ASSERTED)]},
        "extension": [{"url": CONFIDENCE_EXTENSION, "valueDecimal": v["confidence"]}],
        "identifier": [{"system": FIELD_IDENTIFIER_SYSTEM, "value": v["identifier"]}],
        "status": "preliminary",
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": fhir_category, "display": OBSERVATION_CATEGORY_DISPLAY[fhir_category]}]}
        ],
        "code": code,
    }
    if has_subject:
        resource["subject"] = {"reference": v["subject"]}
    resource["effectiveDateTime"] = v["effective"]
    resource["issued"] = v["issued"]
    resource[value[0]] = value[1]
    return {
        "fullUrl": v["full_url"],
        "resource": resource,
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": v["condition"]},
    }


def _field_entry(kind: tuple, v: dict[str, Any]) -> dict[str, Any]:
    _, key, has_subject = kind
    spec = CATALOG.field(key)
    coding = [{"system": LOINC_SYSTEM, "code": spec.loinc.code, "display": spec.loinc.display}] if spec.loinc else []
    coding.append({"system": CATALOG.code_system, "code": spec.key, "display": spec.meaning})
    quantity = {"value": v["value"], "unit": spec.unit, "system": UCUM_SYSTEM, "code": spec.ucum}
    return _observation(spec.key, spec.fhir_category, has_subject, v, {"coding": coding, "text": spec.meaning},
                        ("valueQuantity", quantity))


def _category_entry(kind: tuple, v: dict[str, Any]) -> dict[str, Any]:
    _, value, has_subject = kind
    spec = _category_spec(value)
    code = {"coding": [{"system": CATALOG.code_system, "code": CATEGORY_KEY, "display": CATEGORY_DISPLAY}], "text": CATEGORY_DISPLAY}
    concept = {"coding": [{"system": CATALOG.category_code_system, "code": spec.key, "display": spec.display}], "text": spec.display}
    return _observation(CATEGORY_KEY, "imaging", has_subject, v, code, ("valueCodeableConcept", concept))


def _provenance_entry(kind: tuple, v: dict[str, Any]) -> dict[str, Any]:
    """Provenance of the whole extraction. Its id includes the model identity so a re-extraction by
    another model adds a Provenance instead of rewriting the earlier one (PUT keeps replays idempotent)."""
    _, targets = kind
    resource = {
        "resourceType": "Provenance",
        "id": v["provenance_id"],
        "target": [{"reference": v[f"target{index}"]} for index in range(targets)],
        "recorded": v["recorded"],
        "activity": {"coding": [{"system": DATA_OPERATION_SYSTEM, "code": "CREATE", "display": "create"}]},
        "agent": [
            {
                "type": {"coding": [{"system": PROVENANCE_AGENT_TYPE_SYSTEM, "code": "assembler", "display": "Assembler"}]},
                "who": {"identifier": {"system": SOFTWARE_IDENTIFIER_SYSTEM, "value": v["software"]}, "display": v["described"]},
            }
        ],
        "entity": [{"role": "source", "what": {"identifier": {"system": REPORT_IDENTIFIER_SYSTEM, "value": v["source_id"]}}}],
    }
    return {"fullUrl": v["provenance_url"], "resource": resource, "request": {"method": "PUT", "url": v["provenance_path"]}}


_BUILDERS: dict[str, Callable[[tuple, dict[str, Any]], dict[str, Any]]] = {
    "field": _field_entry, "category": _category_entry, "provenance": _provenance_entry,
}


def _category_spec(value: Any) -> Any:
    spec = next((c for c in CATALOG.categories if c.key == value), None)
    if spec is None:
        raise MappingError(f"category {value!r} is not in the catalog")
    return spec


# --------------------------------------------------------------------------- the record's values


def _parts(record: ExtractionRecord) -> tuple[dict[str, Any], dict[str, Any], list[tuple[tuple, dict[str, Any]]]]:
    """(the Bundle's own variables, the variables every Observation shares, [(kind, the entry's
    own variables)]). Raises MappingError for an unknown field or category or a non-finite value."""
    report_id = record.report_id
    issued = _instant(record.extracted_at)
    has_subject = bool(record.subject_reference)
    shared: dict[str, Any] = {"effective": _instant(record.effective_time or record.extracted_at), "issued": issued}
    if has_subject:
        shared["subject"] = record.subject_reference
    condition = f"identifier={_QUOTED_FIELD_SYSTEM}|{_condition_part(report_id)}/"
    entries: list[tuple[tuple, dict[str, Any]]] = []
    for result in record.fields:
        if result.route == "publish" and result.value is not None:
            key = result.key
            try:
                CATALOG.field(key)
            except KeyError:
                raise MappingError(f"field {key!r} is not in the catalog") from None
            value = float(result.value)
            if not math.isfinite(value):
                raise MappingError(f"field {key}: value is not a finite number")
            entries.append((("field", key, has_subject), _observation_values(report_id, key, condition, result.confidence, value)))
    category = record.category
    if category.route == "publish" and category.value is not None:
        _category_spec(category.value)
        entries.append((("category", category.value, has_subject),
                        _observation_values(report_id, CATEGORY_KEY, condition, category.confidence, None)))
    if entries:
        model = record.model
        software = "/".join([model.backend, model.model or "-", model.adapter or "-"])
        provenance_id = _uuid5(f"{report_id}/Provenance/{software}")
        provenance = {
            "provenance_url": f"urn:uuid:{provenance_id}", "provenance_path": f"Provenance/{provenance_id}",
            "provenance_id": provenance_id, "recorded": issued, "software": software,
            "described": f"cmrx extractor: backend {model.backend}, model {model.model or 'none'}, adapter {model.adapter or 'none'}",
            "source_id": report_id,
        }
        for index, (_, values) in enumerate(entries):
            provenance[f"target{index}"] = values["full_url"]
        entries.append((("provenance", len(entries)), provenance))
    return {"bundle_id": report_id, "timestamp": issued}, shared, entries


def _observation_values(report_id: str, key: str, condition: str, confidence: float, value: float | None) -> dict[str, Any]:
    name = f"{report_id}/{key}"
    values = {
        "full_url": "urn:uuid:" + _uuid5(name),
        "condition": condition + _KEY_CONDITION.get(key, key),
        "confidence": round(float(confidence), 4),
        "identifier": name,
    }
    if value is not None:
        values["value"] = value
    return values


# Field keys as they go into a condition (search-escaped, percent-encoded): catalog keys, so fixed.
_KEY_CONDITION = {key: _condition_part(key) for key in [*CATALOG.keys, CATEGORY_KEY]}


def _bundle_dict(header: dict[str, Any], shared: dict[str, Any], entries: list[tuple[tuple, dict[str, Any]]]) -> dict[str, Any]:
    """The Bundle as a dict, written by the builders alone (the full-validation path)."""
    built = [_BUILDERS[kind[0]](kind, shared | values if kind[0] != "provenance" else values) for kind, values in entries]
    return _header(header, built or None)


# ---------------------------------------------------------------------------------- validation


def _validate(bundle: dict[str, Any]) -> None:
    """Full fhir.resources R4B validation of a Bundle dict plus the references and required
    bindings fhir.resources leaves unchecked (module docstring). Raises MappingError."""
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
    for part, owner in _owned_parts(bundle):
        _check_bindings(part, owner)


# Required bindings of the codes written here (FHIR R4B value sets); fhir.resources checks only
# that a code is a well-formed token.
_REQUIRED_CODES: dict[tuple[str, tuple[str, ...]], frozenset[str]] = {
    ("Bundle", ("type",)): frozenset({"document", "message", "transaction", "transaction-response", "batch",
                                      "batch-response", "history", "searchset", "collection"}),
    ("BundleEntry", ("request", "method")): frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"}),
    ("Observation", ("status",)): frozenset({"registered", "preliminary", "final", "amended", "corrected",
                                             "cancelled", "entered-in-error", "unknown"}),
}
# A valid value of each FHIR primitive type a variable can have, put in the validated template.
_PLACEHOLDERS: dict[str, Any] = {
    "string": "x", "uri": "urn:x", "url": "urn:x", "canonical": "urn:x", "id": "x", "code": "x",
    "decimal": 0.5, "instant": "2000-01-01T00:00:00+00:00", "dateTime": "2000-01-01T00:00:00+00:00",
}


def _owned_parts(bundle: dict[str, Any]):
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


# ------------------------------------------------------------------------ templates and rendering

# Everything besides a kind that decides what the builders write: the module's constants and
# builders. Replacing one (a patch, a reload) makes a new shape, so every template is validated
# again instead of trusting templates learned before.
_SHAPE_NAMES = (
    "AI_ASSERTED", "CATALOG", "UCUM_SYSTEM", "LOINC_SYSTEM", "OBSERVATION_CATEGORY_SYSTEM",
    "OBSERVATION_CATEGORY_DISPLAY", "SECURITY_SYSTEM", "PROVENANCE_AGENT_TYPE_SYSTEM", "DATA_OPERATION_SYSTEM",
    "FIELD_IDENTIFIER_SYSTEM", "SOFTWARE_IDENTIFIER_SYSTEM", "CONFIDENCE_EXTENSION", "CATEGORY_KEY", "CATEGORY_DISPLAY",
    "PROJECT_URL", "REPORT_IDENTIFIER_SYSTEM", "_QUOTED_FIELD_SYSTEM", "_KEY_CONDITION", "_header", "_observation",
    "_field_entry", "_category_entry", "_provenance_entry", "_BUILDERS", "_category_spec", "_parts",
    "_observation_values", "_condition_part", "_search_escape", "_uuid5", "_instant",
)
_MAX_TEMPLATES = 4096
_MAX_CHECKED = 65536  # numbers whose check passed, per type
_MARK = "\x00cmrx:{}\x00"
_ENTRIES = "entries"


def _shape() -> tuple[int, ...]:
    names = globals()
    return tuple(id(names[name]) for name in _SHAPE_NAMES)


class _Check:
    """The fhir.resources validator of one element type (every element of that type and model
    config shares it), for a list of values, and a valid placeholder of its FHIR type."""

    def __init__(self, annotation: Any, config: Any, primitive: str) -> None:
        from pydantic import TypeAdapter

        self.placeholder = _PLACEHOLDERS[primitive]
        self.many = TypeAdapter(list[annotation], config=config)  # type: ignore[valid-type]
        # Strings (ids, references) are checked in Rust, ~0.3 us each; fhir.resources checks
        # decimals and times in Python, ~10 us each: those are checked once per value in a call,
        # and numbers (confidences, measurements repeat) are remembered once they passed.
        self.dedup = primitive in ("decimal", "instant", "dateTime")
        self.passed: set | None = set() if primitive == "decimal" else None

    def valid(self, values: list) -> bool:
        if self.dedup:
            passed = self.passed or ()
            values = list({(type(v), v): v for v in values if (type(v), v) not in passed}.values())
            if not values:
                return True
        try:
            self.many.validate_python(values)
        except Exception:  # noqa: BLE001 - any failure: the full validation decides and explains
            return False
        if self.passed is not None:
            if len(self.passed) > _MAX_CHECKED:
                self.passed.clear()
            self.passed.update((type(v), v) for v in values)
        return True


def _element(owner: str, path: tuple) -> tuple[Any, Any, str]:
    """(the annotation fhir.resources declares for the element at ``path`` of ``owner``, the
    model config it is validated with, its FHIR primitive type), read from the R4B model classes."""
    import typing

    from fhir.resources.R4B import get_fhir_model_class
    from fhir_core.types import FHIR_PRIMITIVES_MAPS, FhirBase

    cls = get_fhir_model_class(owner)
    annotation: Any = None
    for step in path:
        fields = {info.alias or name: info for name, info in cls.model_fields.items()}
        annotation = fields[step].annotation
        while typing.get_origin(annotation) in (typing.Union, list, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        if isinstance(annotation, type) and issubclass(annotation, FhirBase):
            cls = annotation.get_model_klass()
    return annotation, cls.model_config, FHIR_PRIMITIVES_MAPS[annotation]


class _Template:
    """One part of a Bundle of one kind, validated: a bytes ``%`` format with a ``%b`` per
    variable (the byte fragments between them, ``%`` doubled), what fills each in order
    (shared: a value every Observation of the Bundle has, else the entry's own), and the check of
    each variable (an index into the renderer's checks)."""

    __slots__ = ("slots", "format", "order", "own_checks", "shared_checks")

    def __init__(self, fragments: list[bytes], slots: list[tuple[str, int, bool]]) -> None:
        self.slots = slots
        self.format = b"%b".join(fragment.replace(b"%", b"%%") for fragment in fragments)
        self.order = tuple((is_shared, name) for name, _, is_shared in slots)
        self.own_checks = tuple((name, check) for name, check, is_shared in slots if not is_shared and check >= 0)
        self.shared_checks = tuple((name, check) for name, check, is_shared in slots if is_shared)


_SHARED = ("effective", "issued", "subject")  # the variables of ``_parts``'s ``shared``


class _Renderer:
    """Templates per shape of the module and kind, and the checks of the variables' elements."""

    def __init__(self) -> None:
        self._templates: dict[tuple, dict[tuple, _Template]] = {}
        self._checks: list[_Check] = []
        self._check_index: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def render(self, record: ExtractionRecord) -> tuple[bytes, int]:
        header, shared, entries = _parts(record)
        shape = _shape()
        templates = self._templates.get(shape)
        if templates is None:
            with self._lock:
                if len(self._templates) >= 8:  # shapes: one in production
                    self._templates.clear()
                templates = self._templates.setdefault(shape, {})
        header_template = templates.get(("header", bool(entries))) or self._learn(templates, ("header", bool(entries)), header)
        if header_template is None:
            return self._full(header, shared, entries)
        resolved = []
        for kind, own in entries:
            template = templates.get(kind) or self._learn(templates, kind, own if kind[0] == "provenance" else shared | own)
            if template is None:
                return self._full(header, shared, entries)
            resolved.append(template)
        dumps = orjson.dumps
        checks = self._checks
        pending: list[list] = [[] for _ in checks]
        shared_data = {name: dumps(value) for name, value in shared.items()}
        shared_checks: set[tuple[str, int]] = set()
        chunks = []
        for template, (_, own) in zip(resolved, entries):
            chunks.append(template.format % tuple([shared_data[name] if is_shared else dumps(own[name])
                                                   for is_shared, name in template.order]))
            for name, check in template.own_checks:
                pending[check].append(own[name])
            shared_checks.update(template.shared_checks)
        for name, check in shared_checks:  # once per Bundle
            pending[check].append(shared[name])
        for name, check in header_template.own_checks:
            pending[check].append(header[name])
        if not all(checks[index].valid(values) for index, values in enumerate(pending) if values):
            return self._full(header, shared, entries)
        if entries:  # every Provenance target names an entry (true by construction; checked anyway)
            provenance = entries[-1][1]
            urls = {own["full_url"] for _, own in entries[:-1]}
            if not all(provenance[f"target{i}"] in urls for i in range(len(entries) - 1)):
                return self._full(header, shared, entries)
        body = b"[" + b",".join(chunks) + b"]"
        data = header_template.format % tuple([body if name == _ENTRIES else dumps(header[name])
                                               for _, name in header_template.order])
        return data, len(entries)

    def _full(self, header: dict[str, Any], shared: dict[str, Any], entries: list) -> tuple[bytes, int]:
        """The Bundle built as a dict and validated in full: its verdict and message stand."""
        bundle = _bundle_dict(header, shared, entries)
        _validate(bundle)
        return orjson.dumps(bundle), len(entries)

    def _learn(self, templates: dict[tuple, _Template], kind: tuple, variables: dict[str, Any]) -> _Template | None:
        """The template of ``kind`` (``variables``: the names it has, with values of this record):
        where each variable is and its check, from the builder's output with markers; then the
        placeholder version, with the header, validated in full. None: it failed validation."""
        is_header = kind[0] == "header"
        names = list(variables) + ([_ENTRIES] if kind == ("header", True) else [])
        markers = {name: _MARK.format(name) for name in names}
        if is_header:
            marked = _header(markers, markers.get(_ENTRIES))
            owners = _find_markers(marked, "Bundle", (), {})
        else:
            marked = _BUILDERS[kind[0]](kind, markers)
            owners = _find_markers(marked, "BundleEntry", (), {})
        data = orjson.dumps(marked)
        positions = []
        for name, (owner, path) in owners.items():
            token = orjson.dumps(markers[name])
            if data.count(token) != 1:
                return None  # a variable written twice, or a marker in a constant: not template material
            positions.append((data.index(token), name, token))
        positions.sort()
        fragments: list[bytes] = []
        slots: list[tuple[str, int, bool]] = []
        start = 0
        for at, name, token in positions:
            fragments.append(data[start:at])
            start = at + len(token)
            check = -1 if name == _ENTRIES else self._check_of(*owners[name])
            slots.append((name, check, not is_header and kind[0] != "provenance" and name in _SHARED))
        fragments.append(data[start:])
        placeholders = {name: self._checks[check].placeholder for name, check, _ in slots if check >= 0}
        if is_header:
            if kind == ("header", False):  # validated alone; with entries, with each entry kind
                try:
                    _full_validation(_header(placeholders, None))
                except MappingError:
                    return None
        else:
            header = templates.get(("header", True))
            if header is None:
                return None
            header_values = {name: self._checks[check].placeholder for name, check, _ in header.slots if check >= 0}
            try:
                _full_validation(_header(header_values, [_BUILDERS[kind[0]](kind, placeholders)]))
            except MappingError:
                return None
        template = _Template(fragments, slots)
        with self._lock:
            if len(templates) >= _MAX_TEMPLATES:
                templates.clear()
            templates[kind] = template
        return template

    def _check_of(self, owner: str, path: tuple) -> int:
        path = tuple(step for step in path if not isinstance(step, int))  # the element, not the item
        index = self._check_index.get((owner, path))
        if index is None:
            annotation, config, primitive = _element(owner, path)
            key = (annotation, tuple(sorted(config.items())))
            with self._lock:
                index = self._check_index.get(key)
                if index is None:
                    self._checks.append(_Check(annotation, config, primitive))
                    index = self._check_index[key] = len(self._checks) - 1
                self._check_index[(owner, path)] = index
        return index


def _find_markers(node: Any, owner: str, path: tuple, found: dict[str, tuple[str, tuple]]) -> dict[str, tuple[str, tuple]]:
    """{variable name: (owner type, path in it)} of every marker in a builder's output."""
    if isinstance(node, dict):
        if path and isinstance(node.get("resourceType"), str):
            owner, path = node["resourceType"], ()
        for key, value in node.items():
            _find_markers(value, owner, path + (key,), found)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _find_markers(value, owner, path + (index,), found)
    elif isinstance(node, str) and node.startswith("\x00cmrx:") and node.endswith("\x00"):
        found[node[6:-1]] = (owner, path)
    return found


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
    render_bundle(record.model_copy(update={"subject_reference": None}))
    for count in range(len(fields), -1, -1):  # a Provenance template per number of targets
        render_bundle(record.model_copy(update={"fields": fields[:count]}))


_RENDERER = _Renderer()
