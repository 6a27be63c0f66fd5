"""Switch a running consumer to a newly promoted adapter, without a restart.

``ModelUpdates`` reads the models topic with its own consumer: partitions assigned by hand at
their end offsets (only events from now on), nothing committed, no group to rebalance. The
consumer loop calls ``poll()`` between batches, so no extraction is in flight while the backend
switches. For an event it calls ``backend.reload``: the vllm backend gets the adapter's served
name, a local backend the adapter folder; a backend without ``reload`` gets
``settings.llm.adapter`` set and is used as it is.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from cmrx.config import Settings
from cmrx.logs import get_logger
from schemas.messages import ModelEvent

log = get_logger("cmrx.model_updates")


class ModelUpdates:
    def __init__(self, settings: Settings, bootstrap: str, backend: Any) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.settings = settings
        self.backend = backend
        self.topic = settings.topics.models
        self.applied: list[ModelEvent] = []
        self.consumer = Consumer(settings.kafka.client_config() | {
            "bootstrap.servers": bootstrap, "group.id": f"cmrx-model-updates-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "isolation.level": "read_committed",
        })
        metadata = self.consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        if metadata.error is not None:  # no models topic: keep extracting with the model we have
            log.warning("model_updates.disabled", topic=self.topic, error=str(metadata.error))
        # explicit end offsets (not OFFSET_END, which resolves lazily): an event published right
        # after construction is never missed
        assignment = []
        for partition in metadata.partitions:
            high = self._end_offset(TopicPartition(self.topic, partition))
            assignment.append(TopicPartition(self.topic, partition, high))
        self.consumer.assign(assignment)

    def _end_offset(self, tp, timeout_s: float = 30.0) -> int:
        """The partition's high watermark; retried while the broker is still electing the leader
        of a topic created a moment ago (NOT_LEADER_FOR_PARTITION and other retriable errors)."""
        from confluent_kafka import KafkaError, KafkaException

        electing = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)[1]
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                retry = isinstance(error, KafkaError) and (error.retriable() or error.code() in electing)
                if not retry or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def poll(self, timeout: float = 0.0) -> ModelEvent | None:
        """Apply every event that has arrived; returns the last one applied (None if none)."""
        last = None
        while True:
            message = self.consumer.poll(timeout)
            if message is None:
                return last
            timeout = 0.0
            if message.error() is not None:
                continue
            try:
                event = ModelEvent.model_validate_json(message.value())
            except ValueError as exc:
                log.warning("model_updates.bad_event", offset=message.offset(), error=str(exc)[:200])
                continue
            self.apply(event)
            last = event

    def apply(self, event: ModelEvent) -> None:
        backend_name = getattr(self.backend, "name", None)
        target = event.adapter_name if backend_name == "vllm" else (event.adapter_path or event.adapter_name)
        reload = getattr(self.backend, "reload", None)
        if callable(reload):
            reload(target)
        else:
            self.settings.llm.adapter = target
        self.applied.append(event)
        log.info("model_updates.applied", backend=backend_name, adapter=event.adapter_name, version=event.version)

    def close(self) -> None:
        self.consumer.close()
