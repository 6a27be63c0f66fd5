"""``build_record`` assembles the ExtractionRecord without re-validating it: it must equal what
full validation of the same data gives, and a record that full validation refuses still fails."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from extraction.backends.base import BackendOutput, Sample
from extraction.backends.null import NullBackend
from extraction.pipeline import Extractor, build_record
from helpers import DEV_DIR
from schemas.catalog import FIELD_KEYS
from schemas.messages import ExtractionRecord, ReportEnvelope


def test_record_equals_its_full_validation():
    extractor = Extractor("rules")
    for txt in sorted(DEV_DIR.glob("*.txt"))[:4]:
        record = extractor.extract_text(txt.read_text(), txt.stem)
        again = ExtractionRecord.model_validate(record.model_dump())
        assert again == record
        assert again.model_dump_json() == record.model_dump_json()


def test_a_nan_sample_fails_validation_as_before():
    envelope = ReportEnvelope(source_format="text", report_id="nan", text="LVEF nan %")
    values = dict.fromkeys(FIELD_KEYS) | {"LVEF": float("nan")}
    output = BackendOutput(samples=[Sample(values=values, category=None)] * 3)
    with pytest.raises(ValidationError):
        build_record(envelope, envelope.text, output, NullBackend(), n_samples=3, threshold=0.7, combiner="published")


def test_copies_of_one_sample_give_the_record_of_equal_distinct_samples():
    """The deterministic backend's shortcut (one sample object repeated) is the general vote."""
    extractor = Extractor("rules")
    for txt in sorted(DEV_DIR.glob("*.txt"))[:4]:
        text = extractor.prepare(txt.read_text())
        envelope = ReportEnvelope(source_format="text", report_id=txt.stem, text=txt.read_text())
        output = extractor.backend.extract(text, n_samples=3)
        distinct = BackendOutput(samples=[Sample.model_validate(output.samples[0].model_dump()) for _ in range(3)])
        for reference in (None, {key: 1.0 for key in FIELD_KEYS}):
            records = [build_record(envelope, text, out, extractor.backend, n_samples=3, threshold=0.7,
                                    combiner=combiner, reference=reference).model_dump_json(exclude={"extracted_at"})
                       for out in (output, distinct) for combiner in ("published", "extended")]
            assert records[:2] == records[2:]


def test_null_shortcuts_are_what_the_scores_give():
    from extraction import pipeline, scoring, signals

    for key in FIELD_KEYS:
        assert scoring.distribution_parts(key, None) == pipeline._NULL_DISTRIBUTION
        assert tuple(signals.field_signal_parts(key, None, "LVEF 55 %", None)[0]) == pipeline._NULL_SIGNALS
