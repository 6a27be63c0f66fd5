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
from schemas.messages import CategoryResult, ExtractionRecord, ReportEnvelope

_UNITS = {spec.key: spec.unit for spec in CATALOG.fields}


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
    per_field = {key: [s.values.get(key) for s in samples] for key in FIELD_KEYS}
    voted = {key: scoring.vote(values) for key, values in per_field.items()}
    consistency = scoring.consistency_parts(voted)

    # The record is validated once, from plain data, instead of model by model (~300 models).
    fields: list[dict] = []
    for key in FIELD_KEYS:
        value = voted[key]
        scores = [
            ("stability", *scoring.stability_parts(per_field[key])),
            ("consistency", *consistency[key]),
            ("distribution", *scoring.distribution_parts(key, value)),
        ]
        extra, grounded_at = signals.field_signal_parts(key, value, text, reference)
        scores += extra
        confidence = scoring.combine_values([(name, score) for name, score, _ in scores], combiner) if samples else 0.0
        evidence = next((s.evidence[key] for s in samples if key in s.evidence and s.values.get(key) == value), None)
        evidence = evidence or grounded_at
        fields.append({
            "key": key,
            "value": value,
            "unit": _UNITS[key],
            "samples": per_field[key],
            "scores": [{"name": name, "value": score, "reason": reason} for name, score, reason in scores],
            "confidence": confidence,
            "route": scoring.route(confidence, threshold),
            "evidence": evidence,
        })
    return ExtractionRecord.model_validate({
        "report_id": envelope.report_id,
        "subject_reference": envelope.subject_reference,
        "effective_time": envelope.effective_time,
        "source_format": envelope.source_format,
        "deidentified_text": text,
        "fields": fields,
        "category": _category(samples, threshold),
        "model": backend.info(),
        "combiner": combiner,
        "threshold": threshold,
        "invalid_samples": len(output.invalid),
        "seconds": 0.0,
    })


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
    return CategoryResult(
        value=value, samples=labels, confidence=confidence, route=scoring.route(confidence, threshold), reason=reason
    )
