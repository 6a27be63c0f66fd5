"""Pydantic models for every message cmrx reads or writes.

These are the wire contracts: JSON Schema files exported from them live in ``schemas/json/`` for
consumers written in other languages (``cmrx schemas --write`` regenerates them; a test fails
when a file is out of date).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1"

SourceFormat = Literal["hl7v2", "fhir", "text"]
Route = Literal["publish", "review"]
ScoreName = Literal["stability", "consistency", "distribution", "grounding", "agreement"]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReportEnvelope(_Model):
    """One decoded report. Identifiers are metadata only: they never reach a prompt."""

    schema_version: str = SCHEMA_VERSION
    source_format: SourceFormat
    report_id: str = Field(description="Accession/filler/placer number or DiagnosticReport identifier.")
    subject_reference: str | None = Field(None, description="e.g. 'Patient/123' (PID-3 or DiagnosticReport.subject).")
    effective_time: datetime | None = Field(None, description="When the study was performed, if the message says.")
    received_time: datetime = Field(default_factory=utc_now)
    text: str = Field(description="Report text as received (not yet de-identified).")


class Span(_Model):
    """Character span [start, end) in the de-identified text, with the text it covers."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str


class Evidence(_Model):
    spans: list[Span] = Field(default_factory=list)
    original_value: str | None = Field(None, description="The value as written, with its unit, e.g. '69.00 in'.")


class Score(_Model):
    name: ScoreName
    value: float = Field(ge=0.0, le=1.0)
    reason: str = Field(description="Why the score is what it is; says what disagreed when it is low.")


class FieldResult(_Model):
    key: str
    value: float | None = Field(description="Voted value in the catalog's canonical unit.")
    unit: str
    samples: list[float | None] = Field(description="Each sampled value, in sample order.")
    scores: list[Score]
    confidence: float = Field(ge=0.0, le=1.0)
    route: Route
    evidence: Evidence | None = None


class CategoryResult(_Model):
    value: str | None
    samples: list[str | None]
    confidence: float = Field(ge=0.0, le=1.0)
    route: Route
    reason: str = ""


class ModelInfo(_Model):
    backend: str
    model: str | None = None
    adapter: str | None = None


class ExtractionRecord(_Model):
    """The full extraction of one report: audit trail and training input."""

    schema_version: str = SCHEMA_VERSION
    report_id: str
    subject_reference: str | None = None
    effective_time: datetime | None = None
    source_format: SourceFormat
    deidentified_text: str
    fields: list[FieldResult]
    category: CategoryResult
    model: ModelInfo
    combiner: str
    threshold: float
    invalid_samples: int = Field(0, description="Samples the backend produced that failed schema validation.")
    seconds: float = Field(ge=0.0, description="Wall time of extraction and scoring.")
    extracted_at: datetime = Field(default_factory=utc_now)

    def field(self, key: str) -> FieldResult:
        return next(f for f in self.fields if f.key == key)

    def values(self) -> dict[str, float | None]:
        return {f.key: f.value for f in self.fields}


class ReviewItem(_Model):
    key: str
    value: float | None
    unit: str
    samples: list[float | None]
    scores: list[Score]
    confidence: float
    evidence: Evidence | None = None


class ReviewTask(_Model):
    """One task per report with any field below the threshold."""

    schema_version: str = SCHEMA_VERSION
    task_id: str
    report_id: str
    threshold: float
    items: list[ReviewItem]
    category: CategoryResult
    deidentified_text: str
    model: ModelInfo
    created_at: datetime = Field(default_factory=utc_now)


class FieldDecision(_Model):
    key: str
    action: Literal["confirm", "correct", "skip"]
    value: float | None = Field(None, description="The corrected value (canonical unit) when action is 'correct'.")


class ReviewDecision(_Model):
    """A reviewer's answer to a ReviewTask, published to the reviewed topic."""

    schema_version: str = SCHEMA_VERSION
    task_id: str
    report_id: str
    reviewer: str = Field(description="Reviewer id (pseudonymous); never a patient identifier.")
    decisions: list[FieldDecision]
    category: str | None = Field(None, description="Corrected category, if the reviewer changed it.")
    decided_at: datetime = Field(default_factory=utc_now)


class DeadLetter(_Model):
    """Anything that could not be parsed or processed: original bytes kept, never lost."""

    schema_version: str = SCHEMA_VERSION
    stage: Literal["decode", "deidentify", "extract", "map", "produce"]
    reason: str
    error_type: str
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    key_b64: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    original_b64: str = Field(description="The original message bytes, base64.")
    failed_at: datetime = Field(default_factory=utc_now)


class ModelEvent(_Model):
    """Published on the models topic when a new adapter is promoted."""

    schema_version: str = SCHEMA_VERSION
    event: Literal["model-updated"] = "model-updated"
    backend: str
    base_model: str
    adapter_name: str
    adapter_path: str | None = None
    version: str
    metrics: dict[str, float] = Field(default_factory=dict)
    published_at: datetime = Field(default_factory=utc_now)


WIRE_MODELS: dict[str, type[BaseModel]] = {
    "report-envelope": ReportEnvelope,
    "extraction-record": ExtractionRecord,
    "review-task": ReviewTask,
    "review-decision": ReviewDecision,
    "dead-letter": DeadLetter,
    "model-event": ModelEvent,
}
