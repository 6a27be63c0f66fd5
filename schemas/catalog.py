"""Loads ``catalog.yaml``, the single source of every field fact (keys, units, codes, references)."""

from __future__ import annotations

from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")

Sex = Literal["male", "female"]


class CodeRef(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: str
    display: str


class Reference(BaseModel):
    """Published (mu, sigma) per sex in the canonical unit."""

    model_config = ConfigDict(frozen=True)
    male: tuple[float, float]
    female: tuple[float, float]


class FieldSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    key: str
    meaning: str
    description: str
    unit: str
    ucum: str
    fhir_category: Literal["vital-signs", "imaging"]
    loinc: CodeRef | None = None
    reference: Reference | None = None
    plausible: tuple[float, float]
    synonyms: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()  # label parts for the rules extractor, e.g. (LV, EDV, INDEX)

    @property
    def side(self) -> str | None:
        """'LV', 'RV', 'LA', 'RA' for chamber fields, else None."""
        for prefix in ("LV", "RV", "LA", "RA"):
            if self.key.startswith(prefix):
                return prefix
        return None


class CategorySpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    key: str
    display: str


class CategoryRule(BaseModel):
    model_config = ConfigDict(frozen=True)
    category: str
    weight: float = 1.0
    phrases: tuple[str, ...]


class RulesVocabulary(BaseModel):
    """The deterministic extractor's label vocabulary (``rules:`` in catalog.yaml)."""

    model_config = ConfigDict(frozen=True)
    parts: dict[str, dict[str, tuple[str, ...]]] = Field(default_factory=dict)
    abbreviations: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    index_abbreviations: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    negators: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    categories: tuple[CategoryRule, ...] = ()


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True)
    code_system: str
    category_code_system: str
    fields: tuple[FieldSpec, ...]
    categories: tuple[CategorySpec, ...] = Field(min_length=1)
    rules: RulesVocabulary = Field(default_factory=RulesVocabulary)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields)

    @property
    def category_keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.categories)

    def field(self, key: str) -> FieldSpec:
        return self._by_key[key]

    @cached_property
    def _by_key(self) -> dict[str, FieldSpec]:
        """Built once per catalog (the model is frozen, so its fields cannot change)."""
        return {f.key: f for f in self.fields}


@lru_cache(maxsize=1)
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    categories = [{"key": k, **v} for k, v in raw["categories"].items()]
    return Catalog(
        code_system=raw["code_system"],
        category_code_system=raw["category_code_system"],
        fields=raw["fields"],
        categories=categories,
        rules=raw.get("rules") or {},
    )


CATALOG = load_catalog()
FIELD_KEYS: tuple[str, ...] = CATALOG.keys
CATEGORIES: tuple[str, ...] = CATALOG.category_keys
