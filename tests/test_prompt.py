"""The shared prompt builder: fixed prefix, field list from the catalog, target in catalog order."""

from __future__ import annotations

import json

import pytest

from extraction import prompt
from extraction.files import load_folder
from schemas.catalog import CATALOG, CATEGORIES, FIELD_KEYS
from schemas.model_output import InvalidModelOutput, parse_model_output
from tests.helpers import DEV_DIR


def test_prefix_is_fixed_and_holds_every_field_with_description_and_unit():
    assert prompt.build_prompt("report A").startswith(prompt.PREFIX)
    assert prompt.build_prompt("report B").startswith(prompt.PREFIX)
    for spec in CATALOG.fields:
        assert f"{spec.key}: {spec.description}, {spec.unit}\n" in prompt.PREFIX
    lines = [line.split(":")[0] for line in prompt.FIELD_LIST.splitlines()]
    assert lines == list(FIELD_KEYS)
    for category in CATEGORIES:
        assert category in prompt.INSTRUCTION


def test_published_rules_are_in_the_instruction():
    text = prompt.INSTRUCTION.lower()
    assert "never compute" in text and "never guess" in text and "null" in text


def test_prompt_ends_with_the_response_marker_and_strips_the_report():
    p = prompt.build_prompt("\n  LVEF 55 %  \n")
    assert p == prompt.PREFIX + "LVEF 55 %" + prompt.RESPONSE_MARKER


def test_target_is_compact_json_in_catalog_order_then_category():
    truth = json.loads((DEV_DIR / "0001.json").read_text())
    target = prompt.build_target(truth["fields"], truth["CATEGORY"])
    assert list(json.loads(target)) == [*FIELD_KEYS, "CATEGORY"]
    assert target.startswith('{"HEIGHT":175.26,"WEIGHT":84.82,') and target.endswith(',"CATEGORY":"CAD"}')
    assert " " not in target
    values, category = parse_model_output(target)
    assert category == "CAD"
    assert all(values[k] == pytest.approx(truth["fields"][k]) if truth["fields"][k] is not None else values[k] is None
               for k in FIELD_KEYS)


def test_targets_of_all_dev_reports_round_trip():
    for report in load_folder(DEV_DIR):
        target = prompt.build_target(report.truth.fields, report.truth.CATEGORY)
        values, category = parse_model_output(target)
        assert category == report.truth.CATEGORY
        for key in FIELD_KEYS:
            truth = report.truth.fields[key]
            assert (values[key] is None) if truth is None else values[key] == pytest.approx(truth, abs=0.005)


@pytest.mark.parametrize(("value", "text"), [(None, "null"), (1.0, "1"), (175.26, "175.26"), (0.7, "0.7"),
                                             (44.249, "44.25"), (1020, "1020"), (0.0, "0")])
def test_number_format(value, text):
    assert prompt.format_number(value) == text


def test_target_rejects_unknown_category():
    with pytest.raises(ValueError):
        prompt.build_target(dict.fromkeys(FIELD_KEYS), "Amyloid")


def test_layout_alternates_forced_text_and_slots():
    layout = prompt.answer_layout()
    assert isinstance(layout[0], prompt.Forced) and isinstance(layout[-1], prompt.Forced)
    assert [p.key for p in layout if isinstance(p, prompt.Slot)] == [*FIELD_KEYS, "CATEGORY"]
    assert all(type(a) is not type(b) for a, b in zip(layout, layout[1:]))


def test_field_prompts_share_the_report_prefix():
    shared_a, question_a = prompt.field_prompt_parts("LVEF 55 %", "LVEF")
    shared_b, question_b = prompt.field_prompt_parts("LVEF 55 %", "CATEGORY")
    assert shared_a == shared_b and question_a != question_b
    assert "left ventricular ejection fraction" in question_a and "%" in question_a
    assert prompt.build_field_prompt("LVEF 55 %", "LVEF") == shared_a + question_a


def test_field_layout_schema_and_parser_agree():
    assert prompt.render(prompt.field_layout("LVEF"), {"LVEF": 55.0}) == '{"LVEF":55}'
    assert prompt.render(prompt.field_layout("CATEGORY"), {"CATEGORY": "HCM"}) == '{"CATEGORY":"HCM"}'
    assert prompt.parse_field_output('{"LVEF":55}', "LVEF") == 55.0
    assert prompt.parse_field_output('{"LVEF":null}', "LVEF") is None
    assert prompt.parse_field_output('{"CATEGORY":"HCM"}', "CATEGORY") == "HCM"
    assert prompt.field_output_schema("LVEF")["required"] == ["LVEF"]
    assert prompt.field_output_schema("CATEGORY")["properties"]["CATEGORY"]["enum"] == list(CATEGORIES)
    for bad in ['{"LVEF":"55"}', '{"LVEF":55,"X":1}', "LVEF 55", '{"RVEF":55}', "[55]"]:
        with pytest.raises(InvalidModelOutput):
            prompt.parse_field_output(bad, "LVEF")
    with pytest.raises(InvalidModelOutput):
        prompt.parse_field_output('{"CATEGORY":"Amyloid"}', "CATEGORY")
