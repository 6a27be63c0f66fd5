"""``cmrx run --replicas 2`` on the real broker: two replica processes in one consumer group share
the partitions of a small input; every report's outputs appear exactly once and both exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import DEV_DIR, REPO
from streaming_helpers import produce, read_committed, values_json

pytestmark = pytest.mark.kafka


def test_two_replicas_share_the_input_and_publish_each_report_once(kafka_bootstrap, kafka_topics, tmp_path):
    assert kafka_topics.partitions >= 2
    n = 40
    texts = [p.read_text() for p in sorted(DEV_DIR.glob("*.txt"))]
    ids = [f"rep-{i:04d}" for i in range(n)]
    produce(kafka_bootstrap, kafka_topics.reports, [(rid, texts[i % len(texts)].encode(), []) for i, rid in enumerate(ids)])
    partitions = {m.partition() for m in read_committed(kafka_bootstrap, kafka_topics.reports, idle_s=1.0)}
    assert len(partitions) >= 2, partitions  # keyed messages spread over the partitions

    env = os.environ | {f"CMRX_TOPICS__{k.upper()}": v for k, v in kafka_topics.model_dump().items() if isinstance(v, str)}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CMRX_KAFKA__GROUP_ID": f"replicas-{tmp_path.name}",
            "CMRX_KAFKA__TRANSACTIONAL_ID": f"replicas-{tmp_path.name}", "CMRX_RUNTIME__BATCH_SIZE": "4",
            "CMRX_RUNTIME__METRICS_PORT": "0", "CMRX_EXTRACTION__BACKEND": "rules"}
    cmd = [sys.executable, "-m", "cmrx.cli", "run", "--replicas", "2", "--idle-exit", "5", "--instance-id", "rep"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]  # the worst exit code of the two replicas

    events = []
    for line in (done.stdout + done.stderr).splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    stopped = {e.get("instance") for e in events if e.get("event") == "consumer.stopped"}
    assert stopped == {"rep-0", "rep-1"}, stopped  # both replicas ran and closed cleanly
    started = {e.get("instance") for e in events if e.get("event") == "consumer.started"}
    assert started == {"rep-0", "rep-1"}, started

    records = values_json(read_committed(kafka_bootstrap, kafka_topics.extractions))
    assert sorted(r["report_id"] for r in records) == ids  # each record exactly once
    bundles = values_json(read_committed(kafka_bootstrap, kafka_topics.observations))
    bundle_ids = [b["identifier"]["value"] for b in bundles]
    assert len(bundle_ids) == len(set(bundle_ids)) and set(bundle_ids) <= set(ids)
    tasks = values_json(read_committed(kafka_bootstrap, kafka_topics.review))
    task_ids = [t["report_id"] for t in tasks]
    assert len(task_ids) == len(set(task_ids)) and set(task_ids) <= set(ids)
    assert not read_committed(kafka_bootstrap, kafka_topics.dlq, idle_s=1.0)
