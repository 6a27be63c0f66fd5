"""``cmrx review``: auto mode from truth on the real broker, interactive mode from a scripted stdin."""

from __future__ import annotations

import io
import json

import pytest

from helpers import DEV_DIR
from schemas.messages import ReviewDecision
from training.reviewer import TerminalReviewer, decide_from_truth, review_loop, truth_decider


def _task(report_id: str = "0001", wrong: dict[str, float | None] | None = None, category_review: bool = False):
    """A review task for a dev report: the rules extraction with ``wrong`` values sent to review."""
    from consumer.routing import review_task
    from extraction.pipeline import Extractor

    wrong = wrong if wrong is not None else {"LVEDV": 999.0, "HEIGHT": None}
    record = Extractor("rules").extract_text((DEV_DIR / f"{report_id}.txt").read_text(), report_id)
    truth = json.loads((DEV_DIR / f"{report_id}.json").read_text())["fields"]
    fields = []
    for f in record.fields:
        if f.key in wrong:
            f = f.model_copy(update={"value": wrong[f.key], "route": "review", "confidence": 0.4})
        elif f.key == "WEIGHT":  # a right value that still went to review
            f = f.model_copy(update={"value": truth["WEIGHT"], "route": "review", "confidence": 0.6})
        else:
            f = f.model_copy(update={"route": "publish"})
        fields.append(f)
    category = record.category.model_copy(update={"route": "review" if category_review else "publish"})
    task = review_task(record.model_copy(update={"fields": fields, "category": category}))
    assert task is not None
    return task


def test_decisions_from_truth():
    task = _task()
    truth = json.loads((DEV_DIR / "0001.json").read_text())
    decision = decide_from_truth(task, truth)
    by_key = {d.key: d for d in decision.decisions}
    assert by_key["LVEDV"].action == "correct" and by_key["LVEDV"].value == truth["fields"]["LVEDV"]
    assert by_key["HEIGHT"].action == "correct" and by_key["HEIGHT"].value == truth["fields"]["HEIGHT"]
    assert by_key["WEIGHT"].action == "confirm" and by_key["WEIGHT"].value is None
    assert decision.category is None  # the rules backend got CAD right
    changed = decide_from_truth(task, {**truth, "CATEGORY": "HCM"})
    assert changed.category == "HCM"


@pytest.mark.kafka
def test_auto_mode_publishes_the_right_decisions(kafka_bootstrap, kafka_topics):
    from streaming_helpers import produce, read_committed, settings_for, values_json

    settings = settings_for(kafka_topics)
    tasks = [_task("0001"), _task("0005", wrong={"LVEF": 12.0})]
    produce(kafka_bootstrap, kafka_topics.review, [(t.report_id, t.model_dump_json().encode(), []) for t in tasks])
    counts = review_loop(settings, kafka_bootstrap, truth_decider(DEV_DIR), group_id="auto-test", idle_exit_s=2.0)
    assert counts == {"tasks": 2, "published": 2, "skipped_tasks": 0, "bad_tasks": 0}
    decisions = {d["report_id"]: ReviewDecision.model_validate(d)
                 for d in values_json(read_committed(kafka_bootstrap, kafka_topics.reviewed, idle_s=1.0))}
    assert set(decisions) == {"0001", "0005"}
    truth5 = json.loads((DEV_DIR / "0005.json").read_text())["fields"]
    lvef = next(d for d in decisions["0005"].decisions if d.key == "LVEF")
    assert (lvef.action, lvef.value) == ("correct", truth5["LVEF"])
    assert decisions["0001"].task_id == tasks[0].task_id
    # committed: a second run of the same group has nothing left to answer
    again = review_loop(settings, kafka_bootstrap, truth_decider(DEV_DIR), group_id="auto-test", idle_exit_s=2.0)
    assert again["tasks"] == 0


def _scripted(answers: str):
    from rich.console import Console

    out = io.StringIO()
    return TerminalReviewer(console=Console(file=out, width=120, force_terminal=False), stream=io.StringIO(answers),
                            reviewer="tester"), out


def test_interactive_confirm_correct_skip():
    task = _task(category_review=True)
    keys = [item.key for item in task.items]
    assert keys == ["HEIGHT", "WEIGHT", "LVEDV"]  # catalog order
    # HEIGHT: correct, first with a typo, then 175.26; WEIGHT: confirm; LVEDV: skip; category: change to HCM
    reviewer, out = _scripted("r\nabc\n175,26\nc\ns\nHCM\n")
    decision = reviewer(task)
    actions = {d.key: (d.action, d.value) for d in decision.decisions}
    assert actions == {"HEIGHT": ("correct", 175.26), "WEIGHT": ("confirm", None), "LVEDV": ("skip", None)}
    assert decision.category == "HCM" and decision.reviewer == "tester"
    shown = out.getvalue()
    assert "LVEDV" in shown and "not a number" in shown and "stability" in shown


def test_interactive_null_correction_and_default_confirm():
    task = _task(wrong={"LVEDV": 999.0})
    reviewer, _ = _scripted("\nr\nnull\n")  # WEIGHT: Enter = confirm; LVEDV: correct to null
    decision = reviewer(task)
    assert [(d.key, d.action, d.value) for d in decision.decisions] == [("WEIGHT", "confirm", None),
                                                                          ("LVEDV", "correct", None)]
    assert decision.category is None
