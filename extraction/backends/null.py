"""Always null: tests the harness and the pipeline before any real backend exists."""

from __future__ import annotations

from extraction.backends.base import BackendOutput, ExtractionBackend, Sample
from schemas.catalog import FIELD_KEYS
from schemas.messages import ModelInfo


class NullBackend(ExtractionBackend):
    name = "null"
    deterministic = True

    def info(self) -> ModelInfo:
        return ModelInfo(backend=self.name)

    def extract(self, text: str, *, n_samples: int) -> BackendOutput:
        return BackendOutput(samples=[Sample(values=dict.fromkeys(FIELD_KEYS), category=None)])
