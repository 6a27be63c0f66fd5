"""Replicas in one group see their partition assignments (logged, and through ``on_partitions``):
two replicas split the input's partitions between them and every report is processed once."""

from __future__ import annotations

import threading

import pytest

from helpers import DEV_DIR
from streaming_helpers import produce, settings_for

pytestmark = pytest.mark.kafka


def test_two_replicas_split_the_partitions_and_report_them(kafka_bootstrap, kafka_topics):
    from consumer.app import StreamProcessor

    settings = settings_for(kafka_topics)
    everything = {(kafka_topics.reports, p) for p in range(kafka_topics.partitions)}
    history: dict[str, list[set]] = {"a": [], "b": []}
    processors = []
    for name in history:
        processor = StreamProcessor(settings, kafka_bootstrap, instance_id=name)
        processor.keep_summary = True
        processor.on_partitions = history[name].append
        processors.append(processor)
    threads = [threading.Thread(target=p.run, kwargs={"idle_exit_s": 8.0}, daemon=True) for p in processors]
    for thread in threads:
        thread.start()
    text = (DEV_DIR / "0001.txt").read_text().encode()
    produce(kafka_bootstrap, kafka_topics.reports, [(f"r{i:02d}", text, []) for i in range(24)])
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a replica did not exit"

    assert history["a"] and history["b"], "each replica was told its assignment"
    # at some moment the two held disjoint halves that together are every partition
    assert any(a | b == everything and not a & b for a in history["a"] for b in history["b"]), history
    for processor in processors:
        assert not processor.partitions - everything
    done = [r.report_id for p in processors for r in p.summary]
    assert sorted(done) == [f"r{i:02d}" for i in range(24)]  # each report once, across the group
