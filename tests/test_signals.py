"""Grounding and rules agreement: the two signals beyond the published three."""

from __future__ import annotations

import json

import pytest

from extraction import scoring, signals
from extraction.backends.base import BackendOutput, ExtractionBackend, Sample
from extraction.pipeline import Extractor
from schemas.catalog import FIELD_KEYS
from schemas.messages import ModelInfo
from tests.helpers import DEV_DIR

TEXT = "HEIGHT: 69.00 in\nWEIGHT: 187.00 lbs\nBP: 136 / 69 mmHg\nHCT 0.42\nLVEF 55,3 %\nT1 1,020 msec\nHt 5'9\""


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("HEIGHT", 175.26, 1.0),  # 69 in before conversion
        ("WEIGHT", 84.82, 1.0),  # 187 lbs before conversion
        ("SBP", 136.0, 1.0),
        ("DBP", 69.0, 1.0),
        ("HCT", 42.0, 1.0),  # fraction -> percent
        ("LVEF", 55.3, 1.0),  # decimal comma
        ("PRET1M", 1020.0, 1.0),  # thousands separator
        ("LVEF", 61.0, 0.0),  # nowhere in the text
        ("LVEDV", 136.0, 1.0),  # a number that is written, even if for another field
        ("LVEDV", None, signals.NULL_GROUNDING),
    ],
)
def test_grounding(key, value, expected):
    score, evidence = signals.grounding(key, value, TEXT)
    assert score.name == "grounding" and score.value == expected
    if expected == 1.0:
        assert evidence is not None and TEXT[evidence.spans[0].start:evidence.spans[0].end] == evidence.spans[0].text


def test_feet_and_inches_height_is_grounded():
    score, _ = signals.grounding("HEIGHT", 175.26, "Height 5 ft 9 in")
    assert score.value == 1.0


def test_grounding_of_every_dev_truth_value():
    """The truth is always written in the report (converted at most), so it is always grounded."""
    from extraction.deid import deidentify
    from extraction.normalize import clean_text

    ungrounded = []
    for path in sorted(DEV_DIR.glob("*.txt")):
        text = clean_text(deidentify(path.read_text()))
        truth = json.loads(path.with_suffix(".json").read_text())["fields"]
        for key, value in truth.items():
            if value is not None and signals.grounding(key, value, text)[0].value != 1.0:
                ungrounded.append((path.stem, key, value))
    assert ungrounded == []


def test_agreement_uses_the_published_pairwise_score():
    assert signals.agreement(60.0, 60.0).value == 1.0
    assert signals.agreement(None, None).value == 1.0
    assert signals.agreement(60.0, None).value == 0.5
    assert signals.agreement(60.0, 50.0).value == pytest.approx(scoring.pairwise(60.0, 50.0))
    assert "50" in signals.agreement(60.0, 50.0).reason


def test_field_signals_skip_agreement_without_reference():
    scores, _ = signals.field_signals("LVEF", 55.3, TEXT, None)
    assert [s.name for s in scores] == ["grounding"]
    scores, _ = signals.field_signals("LVEF", 55.3, TEXT, {"LVEF": 55.3})
    assert [s.name for s in scores] == ["grounding", "agreement"]


class _Fixed(ExtractionBackend):
    """A backend that always answers the same: LVEF 55.3 (written) and LVEDV 999 (not written)."""

    name = "fixed"

    def info(self) -> ModelInfo:
        return ModelInfo(backend=self.name)

    def extract(self, text, *, n_samples):
        values = dict.fromkeys(FIELD_KEYS) | {"LVEF": 55.3, "LVEDV": 999.0}
        return BackendOutput(samples=[Sample(values=values, category="CAD")] * n_samples)


def test_pipeline_adds_signals_and_combiners_treat_them_as_specified():
    extractor = Extractor(_Fixed())
    extractor.reference = lambda text: dict.fromkeys(FIELD_KEYS) | {"LVEF": 55.3, "LVEDV": 120.0}
    record = extractor.extract_text(TEXT)
    lvedv = record.field("LVEDV")
    names = [s.name for s in lvedv.scores]
    assert names == ["stability", "consistency", "distribution", "grounding", "agreement"]
    by_name = {s.name: s.value for s in lvedv.scores}
    assert by_name["grounding"] == 0.0 and by_name["agreement"] < 0.5
    published = (by_name["stability"] + by_name["consistency"] + by_name["distribution"]) / 3
    assert lvedv.confidence == pytest.approx(published)  # default combiner: published, ignores both
    assert scoring.combine(lvedv.scores, "extended") == pytest.approx(sum(by_name.values()) / 5)
    lvef = record.field("LVEF")
    assert lvef.evidence is not None and lvef.evidence.original_value == "55,3"


def test_missing_rules_backend_means_no_agreement(monkeypatch):
    import extraction.backends as backends

    def missing(name, settings=None):
        raise ModuleNotFoundError("No module named 'extraction.backends.rules'")

    monkeypatch.setattr(backends, "get_backend", missing)
    reference = signals.RulesReference()
    assert reference(TEXT) is None
    assert reference._unavailable


def test_number_candidates_are_the_published_scan():
    """The faster scan (class-led pattern, float() for plain numbers, feet+inches only after a
    digit) finds what the published patterns and parse_number find."""
    import random
    import re

    from extraction.normalize import parse_number

    number = re.compile(r"(?<![\w.])(?:\d+(?:[.,]\d+)*|\.\d+)")
    feet = re.compile(r"(\d+)\s*(?:'|ft\.?|feet)\s*(\d+(?:\.\d+)?)\s*(?:\"|''|in\.?|inches)?", re.IGNORECASE)
    tokens = ["1", "12", ".", ",", "a", " ", "\n", "\t", "'", "ft", "FT", "feet", "in", "''", '"', "09", "x1", "\u0663"]
    rng = random.Random(4)
    for _ in range(20000):
        text = "".join(rng.choice(tokens) for _ in range(rng.randint(1, 25)))
        expected = [(parse_number(m.group()), m.start(), m.end()) for m in number.finditer(text)]
        expected = [c for c in expected if c[0] is not None]
        expected += [(float(m.group(1)) * 30.48 + float(m.group(2)) * 2.54, m.start(), m.end()) for m in feet.finditer(text)]
        assert repr(signals._candidates.__wrapped__(text)) == repr(tuple(expected)), text
