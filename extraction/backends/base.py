"""The contract every extraction backend fulfils: de-identified text in, N samples out.

A backend only proposes values. Voting, scoring and routing happen in ``extraction.pipeline``
so every backend is judged by the same rules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import Evidence, ModelInfo


class Sample(BaseModel):
    """One answer of the backend: a value (canonical unit) or None per field, and a category."""

    model_config = ConfigDict(extra="forbid")
    values: dict[str, float | None]
    category: str | None = None
    category_reason: str = ""
    evidence: dict[str, Evidence] = Field(default_factory=dict)


class BackendOutput(BaseModel):
    """Valid samples plus the reasons the invalid ones were rejected (counted as Invalid)."""

    model_config = ConfigDict(extra="forbid")
    samples: list[Sample]
    invalid: list[str] = Field(default_factory=list)


class BackendError(RuntimeError):
    """The backend could not answer at all (server down, model failed to load)."""


class ExtractionBackend(ABC):
    name: str = "base"
    deterministic: bool = False

    def __init__(self, settings=None) -> None:
        from cmrx.config import get_settings

        self.settings = settings or get_settings()

    @abstractmethod
    def info(self) -> ModelInfo: ...

    @abstractmethod
    def extract(self, text: str, *, n_samples: int) -> BackendOutput:
        """Extract from de-identified, cleaned text. Deterministic backends may return one sample."""

    def close(self) -> None:  # pragma: no cover - most backends hold nothing
        return None
