"""The main job on the real broker: three input formats in, Observations / review tasks /
extraction records / dead letters out, each exactly once, nothing lost, no PHI."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consumer.codecs import encode
from extraction.pipeline import Extractor
from helpers import DEV_DIR, REPO
from schemas.catalog import CATALOG
from streaming_helpers import produce, read_committed, run_processor, settings_for, values_json

pytestmark = pytest.mark.kafka

FORMATS = {"text": "text/plain", "hl7v2": "x-application/hl7-v2+er7", "fhir": "application/fhir+json"}


def dev_messages() -> list[tuple[str, bytes, list]]:
    messages = []
    for txt in sorted(DEV_DIR.glob("*.txt")):
        text = txt.read_text()
        for fmt, content_type in FORMATS.items():
            report_id = f"{txt.stem}-{fmt}"
            kwargs = {"subject_id": f"S{txt.stem}"} if fmt == "hl7v2" else (
                {"subject_reference": f"Patient/S{txt.stem}"} if fmt == "fhir" else {})
            messages.append((report_id, encode(text, fmt, report_id, **kwargs), [("content-type", content_type.encode())]))
    return messages


@pytest.fixture(scope="module")
def expected_records():
    """What the pipeline gives for each dev report, computed without Kafka (same backend)."""
    extractor = Extractor("rules")
    return {txt.stem: extractor.extract_text(txt.read_text(), txt.stem) for txt in sorted(DEV_DIR.glob("*.txt"))}


def test_end_to_end_three_formats_exactly_once(kafka_bootstrap, kafka_topics, expected_records, capfd):
    settings = settings_for(kafka_topics)
    produce(kafka_bootstrap, kafka_topics.reports, dev_messages())
    run_processor(settings, kafka_bootstrap)

    bundles = values_json(read_committed(kafka_bootstrap, kafka_topics.observations))
    reviews = values_json(read_committed(kafka_bootstrap, kafka_topics.review))
    records = values_json(read_committed(kafka_bootstrap, kafka_topics.extractions))
    dead = read_committed(kafka_bootstrap, kafka_topics.dlq, idle_s=1)
    assert dead == []
    assert sorted(r["report_id"] for r in records) == sorted(m[0] for m in dev_messages())  # each exactly once

    by_report: dict[str, dict] = {}
    for bundle in bundles:
        obs = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
        report_id = obs[0]["identifier"][0]["value"].split("/")[0]
        assert report_id not in by_report, "bundle published twice"
        by_report[report_id] = {o["identifier"][0]["value"].split("/")[1]: o for o in obs}
    assert len(by_report) == 36

    for report_id, observations in by_report.items():
        expected = expected_records[report_id.split("-")[0]]
        published = {f.key: f for f in expected.fields if f.route == "publish" and f.value is not None}
        assert set(observations) - {"CATEGORY"} == set(published)
        for key, field in published.items():
            obs, spec = observations[key], CATALOG.field(key)
            assert obs["valueQuantity"]["value"] == pytest.approx(field.value)
            assert obs["valueQuantity"]["code"] == spec.ucum
            assert any(c["code"] == key for c in obs["code"]["coding"])
            assert obs["category"][0]["coding"][0]["code"] == spec.fhir_category
        if expected.category.route == "publish":
            assert observations["CATEGORY"]["valueCodeableConcept"]["coding"][0]["code"] == expected.category.value

    expected_review = {rid for rid in by_report if any(f.route == "review" for f in expected_records[rid.split("-")[0]].fields)}
    assert sorted(r["report_id"] for r in reviews) == sorted(expected_review)  # one task per report, once

    # No planted PHI anywhere in the outputs (outside subject metadata) nor in the logs.
    phi = [p for j in DEV_DIR.glob("*.json") for p in json.loads(j.read_text())["phi"]]
    for topic_values in (bundles, reviews, records):
        blob = json.dumps(topic_values)
        leaked = [p for p in phi if p in blob]
        assert not leaked, leaked
    logs = capfd.readouterr()
    assert not [p for p in phi if p in logs.err + logs.out]


def test_poison_messages_go_to_the_dlq_and_the_stream_goes_on(kafka_bootstrap, kafka_topics):
    settings = settings_for(kafka_topics)
    good = (DEV_DIR / "0001.txt").read_text()
    poison = {
        "binary": os.urandom(2048).replace(b"MSH", b"XXX") + b"\x00",
        "truncated-hl7": encode(good, "hl7v2", "p-trunc")[:60],
        "invalid-fhir": json.dumps({"resourceType": "DiagnosticReport", "status": "not-a-status", "code": 5}).encode(),
        "empty": b"",
        "huge": b"LVEF 50 %\n" * 520_000,
        "wrong-encoding": "Patient height 180 cm, Gr\u00f6\u00dfe \u00fcber".encode("utf-16"),
    }
    messages = [("good-1", good.encode(), [])]
    messages += [(name, value, []) for name, value in poison.items()]
    messages += [("good-2", good.encode(), [])]
    produce(kafka_bootstrap, kafka_topics.reports, messages)
    run_processor(settings, kafka_bootstrap)

    letters = {json.loads(m.value())["key_b64"]: json.loads(m.value()) for m in read_committed(kafka_bootstrap, kafka_topics.dlq)}
    by_key = {base64.b64decode(k).decode(): v for k, v in letters.items()}
    assert set(by_key) == set(poison)
    for name, value in poison.items():
        letter = by_key[name]
        assert base64.b64decode(letter["original_b64"]) == value  # original bytes kept whole
        assert letter["stage"] == "decode" and letter["reason"]
        assert letter["source_topic"] == kafka_topics.reports and letter["source_offset"] is not None
    assert "empty" in by_key["empty"]["reason"]
    records = values_json(read_committed(kafka_bootstrap, kafka_topics.extractions))
    assert sorted(r["report_id"] for r in records) == ["good-1", "good-2"]


def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(kafka_bootstrap, kafka_topics, tmp_path):
    n = 150
    texts = [p.read_text() for p in sorted(DEV_DIR.glob("*.txt"))]
    produce(kafka_bootstrap, kafka_topics.reports, [(f"crash-{i:04d}", texts[i % len(texts)].encode(), []) for i in range(n)])
    env = os.environ | {f"CMRX_TOPICS__{k.upper()}": v for k, v in kafka_topics.model_dump().items() if isinstance(v, str)}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CMRX_KAFKA__GROUP_ID": f"crash-{tmp_path.name}",
            "CMRX_KAFKA__TRANSACTIONAL_ID": f"crash-{tmp_path.name}", "CMRX_RUNTIME__BATCH_SIZE": "2",
            "CMRX_RUNTIME__METRICS_PORT": "0", "CMRX_EXTRACTION__BACKEND": "rules"}
    cmd = [sys.executable, "-m", "cmrx.cli", "run", "--idle-exit", "5", "--instance-id", "crashy"]
    log_path = tmp_path / "first.log"
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log_path.open("w"))
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline:
        seen = len(read_committed(kafka_bootstrap, kafka_topics.extractions, idle_s=0.5, max_s=2))
        if seen >= 10:
            break
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert 10 <= seen < n, f"kill came too late or too early ({seen} of {n} done): {log_path.read_text()[-3000:]}"

    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    ids = [r["report_id"] for r in values_json(read_committed(kafka_bootstrap, kafka_topics.extractions))]
    assert len(ids) == len(set(ids)) == n, (len(ids), len(set(ids)))
