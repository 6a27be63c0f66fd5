"""Turns one processed message into the Kafka records to write: Observations Bundle, review task,
extraction record, or a dead letter. Pure functions: the loop only produces what comes back."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field

from cmrx.config import TopicSettings
from consumer.fhir_mapping import render_bundle
from schemas.messages import DeadLetter, ExtractionRecord, ReviewItem, ReviewTask

_TASK_NAMESPACE = uuid.UUID("6f1d2a52-4c1e-4a8e-9a53-0b7f3f1e2c11")
JSON = "application/json"
FHIR_JSON = "application/fhir+json"


@dataclass
class OutRecord:
    topic: str
    key: str | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def review_task(record: ExtractionRecord) -> ReviewTask | None:
    """One task per report with any field (or the category) below the threshold.

    The task id is stable for the same report and model, so a replay gives the same task.
    """
    items = [
        ReviewItem(key=f.key, value=f.value, unit=f.unit, samples=f.samples, scores=f.scores,
                   confidence=f.confidence, evidence=f.evidence)
        for f in record.fields
        if f.route == "review"
    ]
    if not items and record.category.route != "review":
        return None
    m = record.model
    task_id = str(uuid.uuid5(_TASK_NAMESPACE, f"{record.report_id}|{m.backend}|{m.model}|{m.adapter}"))
    return ReviewTask(task_id=task_id, report_id=record.report_id, threshold=record.threshold, items=items,
                      category=record.category, deidentified_text=record.deidentified_text, model=m)


def outputs_for(record: ExtractionRecord, topics: TopicSettings) -> list[OutRecord]:
    key = record.report_id
    schema = [("cmrx-schema", b"extraction-record")]
    out = [OutRecord(topics.extractions, key, record.model_dump_json().encode(), [("content-type", JSON.encode()), *schema])]
    bundle, entries = render_bundle(record)
    if entries:
        out.append(OutRecord(topics.observations, key, bundle, [("content-type", FHIR_JSON.encode())]))
    task = review_task(record)
    if task:
        out.append(OutRecord(topics.review, key, task.model_dump_json().encode(),
                             [("content-type", JSON.encode()), ("cmrx-schema", b"review-task")]))
    return out


def dead_letter(
    stage: str, error: BaseException, *, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]] | None,
    topic: str | None, partition: int | None, offset: int | None, topics: TopicSettings,
) -> OutRecord:
    """Original bytes and headers kept whole (base64), with where they came from and why they failed."""
    reason = getattr(error, "reason", None) or (str(error).splitlines() or [type(error).__name__])[0]
    letter = DeadLetter(
        stage=stage, reason=reason[:2000], error_type=type(error).__name__, source_topic=topic,
        source_partition=partition, source_offset=offset,
        key_b64=base64.b64encode(key).decode() if key else None,
        headers={k: _header_text(v) for k, v in (headers or [])},
        original_b64=base64.b64encode(value or b"").decode(),
    )
    dlq_headers = [("content-type", JSON.encode()), ("cmrx-schema", b"dead-letter"), ("cmrx-stage", stage.encode())]
    return OutRecord(topics.dlq, key.decode("utf-8", "replace") if key else None, letter.model_dump_json().encode(), dlq_headers)


def _header_text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


def _json_bytes(obj: dict) -> bytes:
    """Compact JSON; orjson (about 5x faster than the standard library on a Bundle) when installed."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    import json

    return json.dumps(obj, separators=(",", ":")).encode()


try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the standard library gives the same JSON value
    _orjson = None
