"""The local broker is real Kafka: transactions, idempotent start, status, topic creation."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from cmrx import kafka_local
from cmrx.config import get_settings


def _external() -> bool:
    return bool(get_settings().kafka.bootstrap_servers)


def _read_all(bootstrap: str, topic: str, isolation: str, expect: int, timeout_s: float = 30.0) -> list[bytes]:
    """Everything on partition 0 visible at this isolation level; stops after ``expect`` messages
    plus a short quiet period so an extra (wrongly visible) message would still be caught."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            **kafka_local.admin_config(bootstrap),
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                values.append(msg.value())
                continue
            if len(values) >= expect:
                quiet_until = quiet_until or time.monotonic() + 2.0
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return values


def test_server_properties_allow_transactions_on_one_node(tmp_path):
    props = kafka_local.server_properties(tmp_path / "data", 19092, 19093, num_partitions=3)
    lines = dict(line.split("=", 1) for line in props.splitlines() if line and not line.startswith("#"))
    assert lines["process.roles"] == "broker,controller"
    assert lines["transaction.state.log.replication.factor"] == "1"
    assert lines["transaction.state.log.min.isr"] == "1"
    assert lines["offsets.topic.replication.factor"] == "1"
    assert lines["group.initial.rebalance.delay.ms"] == "0"
    assert lines["num.partitions"] == "3"
    assert lines["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"


def test_missing_jars_names_what_is_absent(tmp_path):
    assert set(kafka_local.missing_jars(tmp_path)) == set(kafka_local.REQUIRED_JARS)


@pytest.mark.kafka
def test_aborted_transaction_is_invisible_to_read_committed(kafka_bootstrap, kafka_topics):
    from confluent_kafka import Producer

    topic = kafka_topics.reports
    producer = Producer({**kafka_local.admin_config(kafka_bootstrap), "transactional.id": f"test-tx-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(30)

    producer.begin_transaction()
    producer.produce(topic, value=b"aborted", partition=0)
    producer.flush(30)
    producer.abort_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, value=b"committed", partition=0)
    producer.commit_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, value=b"open", partition=0)
    producer.flush(30)  # written to the log, transaction still open

    assert _read_all(kafka_bootstrap, topic, "read_committed", expect=1) == [b"committed"]
    assert _read_all(kafka_bootstrap, topic, "read_uncommitted", expect=3) == [b"aborted", b"committed", b"open"]

    producer.commit_transaction(30)
    assert _read_all(kafka_bootstrap, topic, "read_committed", expect=2) == [b"committed", b"open"]


@pytest.mark.kafka
def test_ensure_topics_is_idempotent_and_uses_configured_partitions(kafka_bootstrap, kafka_topics):
    from confluent_kafka.admin import AdminClient

    settings = get_settings().model_copy(update={"topics": kafka_topics})
    names = kafka_local.ensure_topics(kafka_bootstrap, settings)  # second time: all exist already
    assert names == kafka_local.topic_names(settings) and len(names) == 7
    metadata = AdminClient(kafka_local.admin_config(kafka_bootstrap)).list_topics(timeout=10).topics
    for name in names:
        assert len(metadata[name].partitions) == kafka_topics.partitions


@pytest.mark.kafka
def test_start_is_idempotent_and_status_reports_running(kafka_bootstrap):
    if _external():
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS is set: no local broker to check")
    before = kafka_local.broker_status()
    assert before["running"] and before["bootstrap"] == kafka_bootstrap
    assert kafka_local.ensure_broker(owner="session") == kafka_bootstrap
    assert kafka_local.broker_status()["pid"] == before["pid"]  # reused, not restarted


@pytest.mark.kafka
def test_cli_status_and_start_print_the_address(kafka_bootstrap):
    if _external():
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS is set: no local broker to check")
    cli = [sys.executable, "-m", "cmrx.cli", "kafka"]
    status = subprocess.run([*cli, "status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and kafka_bootstrap in status.stdout
    start = subprocess.run([*cli, "start"], capture_output=True, text=True, timeout=60)
    assert start.returncode == 0 and start.stdout.strip().splitlines()[-1] == kafka_bootstrap
