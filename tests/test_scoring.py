"""Published confidence scores against cases computed by hand (numbers written out, not recomputed)."""

import pytest

from extraction import scoring
from schemas.catalog import FIELD_KEYS


def values(**kw):
    base = dict.fromkeys(FIELD_KEYS)
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (100, 100, 1.0),
        (None, None, 1.0),
        (None, 5.0, 0.5),
        (5.0, None, 0.5),
        (90, 110, 0.6703200460),  # exp(-2*20/100)
        (0, 0, 1.0),  # equal values: no division
        (5, -5, 0.0),  # |a+b| = 0 with a != b
    ],
)
def test_pairwise(a, b, expected):
    assert scoring.pairwise(a, b) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("samples", "expected"),
    [([1, 2, 1], 1), ([1, 2, 2], 2), ([1, 2, 3], 1), ([None, 5, None], None), ([5, None, 5], 5), ([7], 7), ([], None)],
)
def test_vote(samples, expected):
    assert scoring.vote(samples) == expected


def test_stability_and_reason():
    score = scoring.stability([60, 60, 66])
    assert score.value == pytest.approx(0.8843769584, abs=1e-9)
    assert "60, 60, 66" in score.reason
    assert scoring.stability([None, None, None]).value == 1.0
    assert scoring.stability([None, 5, 5]).value == pytest.approx((0.5 + 0.5 + 1) / 3)


def test_distribution_keeps_the_better_sex():
    score = scoring.distribution("LVEF", 42)
    assert score.value == pytest.approx(0.8718061293, abs=1e-9)  # male fits better than female (0.8007)
    assert "3.1 SD below the male mean" in score.reason


def test_distribution_defaults():
    assert scoring.distribution("LVEF", None).value == 0.7
    assert scoring.distribution("HEIGHT", 180).value == 0.7  # no published reference for vitals
    assert scoring.distribution("LAV", 80).reason == "no reference distribution"


def test_consistency_single_relation_and_defaults():
    scores = scoring.consistency_scores(values(LVEDV=200, LVESV=100, LVEF=50))
    assert scores["LVEF"].value == pytest.approx(1.0)
    assert scores["LVEDV"].value == pytest.approx(1.0)
    assert scores["RVEF"].value == 0.7
    assert scores["HEIGHT"].reason == "in no evaluable relation"


def test_consistency_means_over_relations_and_names_the_culprit():
    scores = scoring.consistency_scores(values(LVEDV=200, LVESV=100, LVEF=40, LVSV=100))
    assert scores["LVEF"].value == pytest.approx(0.6411803884, abs=1e-9)
    assert scores["LVEDV"].value == pytest.approx(0.7607869256, abs=1e-9)
    assert scores["LVSV"].value == pytest.approx(0.8205901942, abs=1e-9)
    assert "stated LVEF 40 vs computed 50" in scores["LVEF"].reason


def test_consistency_skips_zero_division():
    scores = scoring.consistency_scores(values(LVEDV=0, LVESV=0, LVEF=50))
    assert scores["LVEF"].value == 0.7


def test_ecv_and_mosteller():
    scores = scoring.consistency_scores(
        values(HCT=44.2, POSTT1M=450, PRET1M=1009, POSTT1B=299, PRET1B=1631, ECV=25, HEIGHT=175.26, WEIGHT=84.82, BSA=2.03)
    )
    assert scores["ECV"].value == pytest.approx(0.9879922334, abs=1e-9)
    assert scores["HEIGHT"].value == pytest.approx(0.9979608430, abs=1e-9)
    assert scores["PRET1B"].value == pytest.approx(0.9879922334, abs=1e-9)


def test_bsa_ratio_relations():
    scores = scoring.consistency_scores(values(BSA=2.0, LVEDV=200, LVEDVI=100, LVMASS=100, LVMASSI=40))
    assert scores["LVEDVI"].value == pytest.approx(1.0)
    assert scores["LVMASSI"].value == pytest.approx(scoring.pairwise(2.0, 2.5))
    assert scores["BSA"].value == pytest.approx((1.0 + scoring.pairwise(2.0, 2.5)) / 2)


def test_there_are_22_relations():
    assert len(scoring.RELATIONS) == 22


def test_combine_and_route_at_threshold():
    parts = [scoring.Score(name="stability", value=1.0, reason=""),
             scoring.Score(name="consistency", value=0.7, reason=""),
             scoring.Score(name="distribution", value=0.4, reason="")]
    assert scoring.combine(parts) == pytest.approx(0.7)
    assert scoring.route(0.7) == "publish"  # at the threshold is published
    assert scoring.route(0.6999) == "review"
    assert scoring.route(0.75, threshold=0.8) == "review"
    extra = parts + [scoring.Score(name="grounding", value=0.0, reason="")]
    assert scoring.combine(extra, "published") == pytest.approx(0.7)
    assert scoring.combine(extra, "extended") == pytest.approx(2.1 / 4)
