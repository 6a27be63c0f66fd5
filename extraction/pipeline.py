"""One report through the stages: de-identify -> clean -> backend samples -> vote -> score -> route.

Every backend goes through the same voting and scoring so their confidences mean the same.
"""

from __future__ import annotations

import time

from cmrx.config import Settings, get_settings
from extraction import scoring, signals
from extraction.backends import ExtractionBackend, get_backend
from extraction.backends.base import BackendOutput
from extraction.deid import Deidentifier
from extraction.normalize import clean_text
from schemas.catalog import CATALOG, FIELD_KEYS
from schemas.messages import (
    SCHEMA_VERSION, CategoryResult, Evidence, ExtractionRecord, FieldResult, ModelInfo, ReportEnvelope, Score, Span,
    utc_now,
)


class Extractor:
    """Holds a backend and the scoring settings; ``extract`` is safe to call from threads."""

    def __init__(self, backend: ExtractionBackend | str | None = None, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        if isinstance(backend, ExtractionBackend):
            self.backend = backend
        else:
            self.backend = get_backend(backend or self.settings.extraction.backend, self.settings)
        self.deidentifier = Deidentifier(self.settings.extraction.deid_keywords)
        # agreement needs a second opinion; the rules backend cannot be its own
        self.reference = signals.RulesReference(self.settings) if self.backend.name != "rules" else None

    def prepare(self, raw_text: str) -> str:
        """The text any model sees: de-identified, then the published clean-up."""
        return clean_text(self.deidentifier(raw_text).text)

    def extract(self, envelope: ReportEnvelope) -> ExtractionRecord:
        started = time.perf_counter()
        text = self.prepare(envelope.text)
        cfg = self.settings.extraction
        output = self.backend.extract(text, n_samples=cfg.samples)
        reference = self.reference(text) if self.reference else None
        record = build_record(
            envelope, text, output, self.backend, n_samples=cfg.samples, threshold=cfg.threshold,
            combiner=cfg.combiner, reference=reference,
        )
        record.seconds = time.perf_counter() - started
        return record

    def extract_text(self, raw_text: str, report_id: str = "report") -> ExtractionRecord:
        return self.extract(ReportEnvelope(source_format="text", report_id=report_id, text=raw_text))


def build_record(
    envelope: ReportEnvelope,
    text: str,
    output: BackendOutput,
    backend: ExtractionBackend,
    *,
    n_samples: int,
    threshold: float,
    combiner: str,
    reference: dict[str, float | None] | None = None,
) -> ExtractionRecord:
    """Vote, score and route every field. ``reference`` (the rules backend's values) adds the
    'agreement' score; 'grounding' is always added. The 'published' combiner ignores both."""
    samples = list(output.samples)
    if backend.deterministic and len(samples) == 1:
        samples = samples * n_samples  # a deterministic backend is perfectly stable
    n = len(samples)
    # A deterministic backend's copies are one object: every field's samples are then one value
    # repeated, its vote is that value, its stability is 1 (NaN aside: NaN != NaN) and its
    # evidence is that sample's. The general path gives the same; this one skips its loops.
    copies = n > 0 and all(sample is samples[0] for sample in samples)
    if copies:
        values = samples[0].values
        voted = {key: values.get(key) for key in FIELD_KEYS}
        agree = scoring.stability_parts([0.0] * n)  # (1.0, "all n samples agree") or "single sample"
    else:
        per_field = {key: [s.values.get(key) for s in samples] for key in FIELD_KEYS}
        voted = {key: scoring.vote(values) for key, values in per_field.items()}
    consistency = scoring.consistency_parts(voted)
    published = combiner == "published"

    # The record is assembled from parts our own code produced from validated inputs (the
    # envelope, the backend's samples, the settings), so its ~300 models are constructed without
    # validation; the range check below then catches what could still be out of range (a NaN or
    # an infinity in a sample makes NaN scores) and sends such a record through full validation.
    # Scores are never changed after this; equal scores of one record share one instance.
    made: dict[tuple[str, float, str], Score] = {}
    null_scores: list[Score] | None = None
    fields: list[FieldResult] = []
    in_range = True
    stability_parts, distribution_parts = scoring.stability_parts, scoring.distribution_parts
    signal_parts, first_evidence = signals.field_signal_parts, samples[0].evidence.get if copies else None
    for key in FIELD_KEYS:
        value = voted[key]
        if copies:
            field_samples = [value] * n
            stab, stab_reason = agree if value == value else stability_parts(field_samples)
        else:
            field_samples = per_field[key]
            stab, stab_reason = stability_parts(field_samples)
        cons, cons_reason = consistency[key]
        if value is None and reference is None:  # what the two calls below give for a null
            (dist, dist_reason), extra, grounded_at = _NULL_DISTRIBUTION, _NULL_SIGNALS, None
        else:
            dist, dist_reason = distribution_parts(key, value)
            extra, grounded_at = signal_parts(key, value, text, reference)
        parts = [("stability", stab, stab_reason), ("consistency", cons, cons_reason),
                 ("distribution", dist, dist_reason), *extra]
        if copies and value is None and reference is None:  # the same parts for every such field
            if null_scores is None:
                null_scores = [made.get(part) or _shared_score(made, part) for part in parts]
            scores = list(null_scores)
        else:
            scores = [made.get(part) or _shared_score(made, part) for part in parts]
        if not samples:
            confidence = 0.0
        elif published:  # scoring.combine, 'published'
            confidence = sum((stab, cons, dist)) / 3
        else:
            confidence = scoring.combine(scores, combiner)
        if in_range and not (0.0 <= confidence <= 1.0 and 0.0 <= stab <= 1.0 and 0.0 <= cons <= 1.0
                             and 0.0 <= dist <= 1.0 and all(0.0 <= part[1] <= 1.0 for part in extra)):
            in_range = False
        if copies:
            evidence = first_evidence(key) if value == value else None
        else:
            evidence = next((s.evidence[key] for s in samples if key in s.evidence and s.values.get(key) == value), None)
        if evidence is None and grounded_at:
            evidence = _evidence(grounded_at)
        fields.append(_field_result({
            "key": key,
            "value": value,
            "unit": _UNITS[key],
            "samples": field_samples,
            "scores": scores,
            "confidence": confidence,
            "route": "publish" if confidence >= threshold else "review",  # scoring.route
            "evidence": evidence,
        }))
    category = _category(samples, threshold)
    record = _new(ExtractionRecord, _RECORD_SET, {
        "schema_version": SCHEMA_VERSION,
        "report_id": envelope.report_id,
        "subject_reference": envelope.subject_reference,
        "effective_time": envelope.effective_time,
        "source_format": envelope.source_format,
        "deidentified_text": text,
        "fields": fields,
        "category": category,
        "model": backend.info(),
        "combiner": combiner,
        "threshold": threshold,
        "invalid_samples": len(output.invalid),
        "seconds": 0.0,
        "extracted_at": utc_now(),
    })
    if not in_range or not 0.0 <= category.confidence <= 1.0 or type(record.model) is not ModelInfo:
        # raises the ValidationError full validation always raised for such a record
        return ExtractionRecord.model_validate(record.model_dump(exclude={"schema_version", "extracted_at"}))
    return record


_UNITS = {key: CATALOG.field(key).unit for key in FIELD_KEYS}
_NULL_DISTRIBUTION = scoring.distribution_parts(FIELD_KEYS[0], None)  # the same for every key
_NULL_SIGNALS = tuple(signals.field_signal_parts(FIELD_KEYS[0], None, "", None)[0])  # text and key unused


# ---- construction without validation -----------------------------------------------------------
# What ``model_construct`` does, without its per-field loop: the fields-set is what a validation
# of the same plain data recorded (every field given, except the record's two defaults).
_FIELD_RESULT_SET = frozenset(FieldResult.model_fields)
_SCORE_SET = frozenset(Score.model_fields)
_SPAN_SET = frozenset(Span.model_fields)
_EVIDENCE_SET = frozenset(Evidence.model_fields)
_CATEGORY_SET = frozenset(CategoryResult.model_fields)
_RECORD_SET = frozenset(ExtractionRecord.model_fields) - {"schema_version", "extracted_at"}
_setattr = object.__setattr__


def _new(cls, fields_set: frozenset[str], data: dict):
    obj = cls.__new__(cls)
    _setattr(obj, "__dict__", data)
    _setattr(obj, "__pydantic_fields_set__", set(fields_set))
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj


_SHARED_SCORE_SET = set(_SCORE_SET)  # every field given: an assignment adds nothing to it
_SHARED_FIELD_RESULT_SET = set(_FIELD_RESULT_SET)


def _field_result(data: dict, _new_result=FieldResult.__new__, _cls=FieldResult) -> FieldResult:
    """``_new`` for the 52 field results of a record (every field given: one shared fields-set)."""
    obj = _new_result(_cls)
    _setattr(obj, "__dict__", data)
    _setattr(obj, "__pydantic_fields_set__", _SHARED_FIELD_RESULT_SET)
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj


def _score(name: str, value: float, reason: str, _new_score=Score.__new__, _cls=Score) -> Score:
    """``_new`` for the scores of a record, inlined; they share one complete fields-set."""
    obj = _new_score(_cls)
    _setattr(obj, "__dict__", {"name": name, "value": value, "reason": reason})
    _setattr(obj, "__pydantic_fields_set__", _SHARED_SCORE_SET)
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj


def _shared_score(made: dict, part: tuple[str, float, str]) -> Score:
    """The record's Score for ``part`` (name, value, reason), made on first use."""
    score = made[part] = _score(*part)
    return score


def _evidence(data: dict) -> Evidence:
    spans = [_new(Span, _SPAN_SET, dict(span)) for span in data["spans"]]
    return _new(Evidence, _EVIDENCE_SET, {"spans": spans, "original_value": data.get("original_value")})


def _check_ranges(confidence: float, scores: list[Score]) -> bool:
    """Score values and the confidence in [0, 1] (False for NaN), as the models declare."""
    if not 0.0 <= confidence <= 1.0:
        return False
    return all(0.0 <= sc.value <= 1.0 for sc in scores)


def _category(samples, threshold: float) -> CategoryResult:
    """Category gets the same shape of confidence: stability of the vote, 0.7 for the two
    scores that have no meaning for a label (no formula, no reference distribution)."""
    labels = [s.category for s in samples]
    value = scoring.vote(labels)
    n = len(labels)
    if n >= 2:
        pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]
        stab = sum(1.0 if a == b else (0.5 if (a is None) != (b is None) else 0.0) for a, b in pairs) / len(pairs)
    else:
        stab = 1.0 if labels else 0.0
    confidence = (stab + scoring.DEFAULT + scoring.DEFAULT) / 3
    reason = next((s.category_reason for s in samples if s.category == value and s.category_reason), "")
    return _new(CategoryResult, _CATEGORY_SET, {
        "value": value, "samples": labels, "confidence": confidence, "route": scoring.route(confidence, threshold),
        "reason": reason,
    })
