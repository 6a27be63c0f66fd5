"""Catalog and wire schemas: one source of truth, exported files up to date."""

import json

import pytest

from extraction.files import load_folder
from helpers import DEV_DIR
from schemas.catalog import CATALOG, CATEGORIES, FIELD_KEYS
from schemas.export import stale_files
from schemas.model_output import InvalidModelOutput, model_output_schema, parse_model_output


def test_catalog_covers_the_dev_truth():
    assert len(FIELD_KEYS) == 52 and len(set(FIELD_KEYS)) == 52
    assert set(CATEGORIES) == {"CAD", "HCM", "DCM", "Ebstein", "PAH"}
    for report in load_folder(DEV_DIR):
        assert set(report.truth.fields) == set(FIELD_KEYS)


def test_catalog_facts():
    vitals = [f.key for f in CATALOG.fields if f.fhir_category == "vital-signs"]
    assert vitals == ["HEIGHT", "WEIGHT", "BSA", "SBP", "DBP", "BHR"]
    assert CATALOG.field("LVEF").reference.male == (64, 7)
    assert CATALOG.field("RVMASSI").reference.female == (16, 4)
    with_reference = {f.key for f in CATALOG.fields if f.reference}
    assert len(with_reference) == 34 and "LAV" not in with_reference and "RVEDD" not in with_reference
    assert all(f.ucum and f.unit and f.synonyms for f in CATALOG.fields)


def test_exported_json_schemas_are_up_to_date():
    assert stale_files() == [], "run: cmrx schemas --write"


def test_model_output_schema_is_flat():
    schema = model_output_schema()
    assert list(schema["properties"]) == [*FIELD_KEYS, "CATEGORY"]
    assert all(p in ({"type": ["number", "null"]},) for k, p in schema["properties"].items() if k != "CATEGORY")
    assert "oneOf" not in json.dumps(schema) and "anyOf" not in json.dumps(schema)


def test_parse_model_output_fails_closed():
    good = {k: None for k in FIELD_KEYS} | {"LVEF": 55, "CATEGORY": "HCM"}
    values, category = parse_model_output(json.dumps(good))
    assert values["LVEF"] == 55.0 and category == "HCM"
    for bad in ["{", "[]", json.dumps({**good, "CATEGORY": "XYZ"}), json.dumps({**good, "LVEF": "55"}),
                json.dumps({k: v for k, v in good.items() if k != "RVEF"}), json.dumps({**good, "EXTRA": 1})]:
        with pytest.raises(InvalidModelOutput):
            parse_model_output(bad)
