"""Helpers for tests that run the consumer against the real broker."""

from __future__ import annotations

import json
import threading
import uuid

from confluent_kafka import Consumer, Producer

from cmrx.config import Settings, TopicSettings, get_settings


def settings_for(topics: TopicSettings, backend: str = "rules", **runtime) -> Settings:
    base = get_settings()
    s = base.model_copy(deep=True)
    s.topics = topics
    s.extraction.backend = backend
    s.kafka.group_id = f"test-{uuid.uuid4().hex[:8]}"
    s.kafka.transactional_id = f"test-{uuid.uuid4().hex[:8]}"
    s.runtime.metrics_port = 0
    for key, value in runtime.items():
        setattr(s.runtime, key, value)
    return s


def produce(bootstrap: str, topic: str, messages: list[tuple[str | None, bytes, list[tuple[str, bytes]]]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "message.max.bytes": 20_000_000})
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(err)

    for key, value, headers in messages:
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert errors == [], errors


def read_committed(bootstrap: str, topic: str, idle_s: float = 3.0, max_s: float = 60.0) -> list:
    """Every committed message of a topic (from the beginning), until it has been idle for idle_s."""
    import time

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    out, started, last = [], time.monotonic(), time.monotonic()
    while time.monotonic() - last < idle_s and time.monotonic() - started < max_s:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        out.append(msg)
        last = time.monotonic()
    consumer.close()
    return out


def values_json(messages) -> list[dict]:
    return [json.loads(m.value()) for m in messages]


def run_processor(settings: Settings, bootstrap: str, idle_exit_s: float = 4.0, instance_id: str = "t1"):
    """Run the real StreamProcessor in a thread until the input is idle; returns it (summary kept)."""
    from consumer.app import StreamProcessor

    processor = StreamProcessor(settings, bootstrap, instance_id=instance_id)
    processor.keep_summary = True
    thread = threading.Thread(target=processor.run, kwargs={"idle_exit_s": idle_exit_s}, daemon=True)
    thread.start()
    thread.join(timeout=600)
    assert not thread.is_alive(), "consumer did not exit"
    return processor
