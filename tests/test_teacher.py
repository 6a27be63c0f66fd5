"""Teacher mode: per-field prompts, 3 finished samples within 10 tries, vote, scores, dev-set format."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from cmrx.config import get_settings
from extraction import teacher
from extraction.backends.answers import FieldAnswer
from extraction.files import Truth
from extraction.prompt import CATEGORY_KEY
from tests.helpers import DEV_DIR
from tests.vllm_contract_server import ContractServer


class Scripted:
    """complete_field answers from a script of (value, finished) per generation."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def complete_field(self, text, key, *, n, temperature, top_p, seed=None):
        self.calls.append({"key": key, "n": n, "temperature": temperature, "top_p": top_p, "seed": seed})
        out = []
        for _ in range(n):
            value, finished = self.script.pop(0) if self.script else (None, False)
            out.append(FieldAnswer(value if finished else None, finished, "" if finished else "TruncatedAnswer: x"))
        return out


def test_collect_asks_again_until_three_finished():
    backend = Scripted([(60.0, True), (None, False), (61.0, True), (None, False), (60.0, True)])
    values, tries, rejected = teacher.collect(backend, "text", "LVEF")
    assert values == [60.0, 61.0, 60.0] and tries == 5 and len(rejected) == 2
    assert [c["n"] for c in backend.calls] == [3, 1, 1]
    assert all(c["temperature"] == 0.3 and c["top_p"] == 0.8 for c in backend.calls)
    assert len({c["seed"] for c in backend.calls}) == 3  # a retry is a new draw


def test_collect_stops_after_ten_generations():
    backend = Scripted([(None, False)] * 20)
    values, tries, rejected = teacher.collect(backend, "text", "LVEF")
    assert values == [] and tries == 10 and len(rejected) == 10


def test_label_report_votes_and_scores():
    backend = Scripted([(60.0, True), (60.0, True), (58.0, True), ("CAD", True), ("HCM", True), ("CAD", True)])
    labels = teacher.label_report(backend, "LVEF 60 %", ("LVEF", CATEGORY_KEY))
    assert labels["fields"] == {"LVEF": 60.0} and labels["CATEGORY"] == "CAD"
    lvef = labels["scores"]["LVEF"]
    assert lvef["samples"] == [60.0, 60.0, 58.0] and lvef["stability"] < 1.0 and lvef["grounding"] == 1.0
    assert set(lvef) >= {"stability", "consistency", "distribution", "confidence", "route"}
    assert labels["scores"]["CATEGORY"]["stability"] == pytest.approx(1 / 3)


def test_unlabelled_field_goes_to_review():
    labels = teacher.label_report(Scripted([]), "text", ("LVEF",))
    assert labels["fields"]["LVEF"] is None and labels["scores"]["LVEF"]["route"] == "review"


def _copy_report(tmp_path, report_id="0001"):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DEV_DIR / f"{report_id}.txt", data)
    return data


def test_teacher_command_through_the_contract_server(tmp_path, monkeypatch):
    truth = json.loads((DEV_DIR / "0001.json").read_text())
    data = _copy_report(tmp_path)
    with ContractServer(answers=truth["fields"]) as server:
        monkeypatch.setenv("CMRX_LLM__VLLM_URL", server.url)
        get_settings.cache_clear()
        try:
            args = argparse.Namespace(backend="vllm", data=data, out=tmp_path / "out", limit=1, fields=None, adapter=None)
            assert teacher.run(args) == 0
        finally:
            get_settings.cache_clear()
        requests = list(server.requests)
    assert len(requests) == 53  # one prompt per field and one for CATEGORY, 3 samples each
    assert all(r["n"] == 3 and r["top_p"] == 0.8 and r["temperature"] == 0.3 for r in requests)
    assert all(len(r["structured_outputs"]["json"]["properties"]) == 1 for r in requests)
    labels = json.loads((tmp_path / "out" / "0001.json").read_text())
    Truth.model_validate(labels)  # the dev-set format
    assert labels["fields"] == {k: (None if v is None else float(v)) for k, v in truth["fields"].items()}
    assert labels["CATEGORY"] == "CAD"
    assert labels["scores"]["LVEDV"]["stability"] == 1.0 and labels["scores"]["LVEDV"]["route"] == "publish"
    assert "scores" in labels and labels["teacher"]["backend"] == "vllm"


@pytest.mark.slow
def test_teacher_with_the_local_model_on_a_few_fields(tmp_path):
    pytest.importorskip("torch", reason="the llm extra is not installed")
    from extraction.deid import deidentify
    from extraction.normalize import clean_text
    from tests.local_model import shared_local_backend

    backend = shared_local_backend()
    text = clean_text(deidentify((DEV_DIR / "0001.txt").read_text()))
    keys = ("LVEDV", "LVEF", "HCT", CATEGORY_KEY)
    labels = teacher.label_report(backend, text, keys)
    assert set(labels["fields"]) == {"LVEDV", "LVEF", "HCT"}
    assert labels["CATEGORY"] in ("CAD", "HCM", "DCM", "Ebstein", "PAH")
    for key in keys:
        entry = labels["scores"][key]
        assert len(entry["samples"]) == 3 and entry["tries"] == 3 and 0.0 <= entry["confidence"] <= 1.0
