"""A running consumer switches adapters when a model-updated event arrives, without a restart."""

from __future__ import annotations

import json
import threading
import time

import pytest
from confluent_kafka import Producer

from extraction.backends.rules import RulesBackend
from extraction.pipeline import Extractor
from helpers import DEV_DIR
from schemas.messages import ModelEvent, ModelInfo
from streaming_helpers import produce, read_committed, settings_for

pytestmark = pytest.mark.kafka


class ReloadableRules(RulesBackend):
    """The rules backend plus the reload hook LLM backends have; records what it was told."""

    name = "rules"

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self.adapter: str | None = None
        self.reloads: list[str] = []

    def reload(self, adapter: str) -> None:
        self.adapter = adapter
        self.reloads.append(adapter)

    def info(self) -> ModelInfo:
        return ModelInfo(backend=self.name, model="rules", adapter=self.adapter)


def test_running_consumer_switches_adapter(kafka_bootstrap, kafka_topics):
    from consumer.app import StreamProcessor

    settings = settings_for(kafka_topics)
    backend = ReloadableRules(settings)
    processor = StreamProcessor(settings, kafka_bootstrap, extractor=Extractor(backend, settings), instance_id="switch")
    thread = threading.Thread(target=processor.run, kwargs={"idle_exit_s": 6.0}, daemon=True)
    thread.start()
    text = (DEV_DIR / "0001.txt").read_text().encode()
    produce(kafka_bootstrap, kafka_topics.reports, [("before", text, [])])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not read_committed(kafka_bootstrap, kafka_topics.extractions, idle_s=0.3, max_s=2):
        pass

    event = ModelEvent(backend="local", base_model="SmolLM2-135M-Instruct", adapter_name="cmrx-student-v2",
                       adapter_path="registry/cmrx-student-v2", version="2")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(kafka_topics.models, value=event.model_dump_json().encode())
    producer.flush(10)
    time.sleep(3)  # applied between batches
    produce(kafka_bootstrap, kafka_topics.reports, [("after", text, [])])
    thread.join(timeout=120)
    assert not thread.is_alive()

    assert backend.reloads == ["registry/cmrx-student-v2"]
    records = {r["report_id"]: r for r in map(json.loads, (m.value() for m in read_committed(kafka_bootstrap, kafka_topics.extractions)))}
    assert records["before"]["model"]["adapter"] is None
    assert records["after"]["model"]["adapter"] == "registry/cmrx-student-v2"
