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
