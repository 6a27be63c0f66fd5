"""MLLP bridge on the real broker: AA only after the write (and the message is on the topic), many
messages per connection and concurrent connections, AE for garbage and oversize frames, AR when
Kafka is unreachable. Also the file publisher and tail on the same broker."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
import uuid
from pathlib import Path

import pytest

from cmrx.config import get_settings
from cmrx.kafka_local import admin_config
from consumer.codecs import CONTENT_TYPE_HL7, decode_message, encode_hl7
from helpers import DEV_DIR
from producer.mllp import END_BLOCK, START_BLOCK, MllpBridge, close_client, frame, make_producer

REPORTS = sorted(DEV_DIR.glob("*.txt"))


def _message(index: int, **kwargs) -> bytes:
    report = REPORTS[index % len(REPORTS)]
    return encode_hl7(report.read_text(encoding="utf-8"), f"ACC-{report.stem}-{index}", control_id=f"CTL{index}", subject_id=f"PT{index}", **kwargs)


def _ack_fields(ack: bytes) -> dict[str, list[str]]:
    """Segment name -> fields of an ACK (MSA-1 is fields[1])."""
    segments = [s for s in ack.decode().split("\r") if s]
    return {s[:3]: s.split("|") for s in segments}


async def _read_ack(reader: asyncio.StreamReader) -> bytes:
    data = await asyncio.wait_for(reader.readuntil(END_BLOCK), timeout=60)
    assert data.startswith(START_BLOCK)
    return data[1 : -len(END_BLOCK)]


async def _exchange(port: int, payloads: list[bytes], chunk: int | None = None) -> list[bytes]:
    """Send all frames on one connection (optionally in small chunks), then read one ACK each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b"".join(frame(p) for p in payloads)
    step = chunk or len(data)
    for start in range(0, len(data), step):
        writer.write(data[start : start + step])
        await writer.drain()
    acks = [await _read_ack(reader) for _ in payloads]
    writer.close()
    await writer.wait_closed()
    return acks


def _consume(bootstrap: str, topic: str, expect: int, timeout_s: float = 30.0) -> list:
    from confluent_kafka import Consumer

    consumer = Consumer({**admin_config(bootstrap), "group.id": f"test-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest", "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    messages = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                messages.append(msg)
    finally:
        consumer.close()
    return messages


def _run_bridge(bootstrap: str, topic: str, scenario, **bridge_kwargs):
    """Start a bridge on a free port, run ``scenario(port)``, close the bridge; returns its result."""
    settings = get_settings()
    delivery_timeout = bridge_kwargs.pop("delivery_timeout_s", 10.0)

    producer = make_producer(bootstrap, settings, delivery_timeout)

    async def main():
        bridge = MllpBridge(producer, topic, settings=settings, delivery_timeout_s=delivery_timeout, **bridge_kwargs)
        await bridge.start("127.0.0.1", 0)
        try:
            return await scenario(bridge.port), bridge.counts
        finally:
            await bridge.close(flush_timeout_s=1.0)

    try:
        return asyncio.run(main())
    finally:
        close_client(producer)


@pytest.mark.kafka
def test_aa_after_write_and_message_on_topic(kafka_bootstrap, kafka_topics):
    message = _message(0)
    acks, counts = _run_bridge(kafka_bootstrap, kafka_topics.reports, lambda port: _exchange(port, [message]))
    msh, msa = _ack_fields(acks[0])["MSH"], _ack_fields(acks[0])["MSA"]
    assert msa[1:3] == ["AA", "CTL0"]
    assert msh[8].startswith("ACK") and msh[4] == "CMRX"
    assert counts == {"AA": 1, "AE": 0, "AR": 0}
    (stored,) = _consume(kafka_bootstrap, kafka_topics.reports, 1)
    assert stored.value() == message
    assert stored.key() == b"ACC-0001-0"
    assert dict(stored.headers()) == {"content-type": CONTENT_TYPE_HL7.encode()}
    assert decode_message(stored.value(), stored.headers()).report_id == "ACC-0001-0"


@pytest.mark.kafka
def test_many_messages_per_connection_and_concurrent_connections(kafka_bootstrap, kafka_topics):
    batches = [[_message(10 * c + i, variant=("lines", "br", "nte")[i % 3], separator=("\r", "\n")[c % 2]) for i in range(4)] for c in range(3)]

    async def scenario(port):
        # connection 0 in one write, 1 byte-split into 7-byte reads, 2 in 1000-byte chunks; all at once
        return await asyncio.gather(_exchange(port, batches[0]), _exchange(port, batches[1], chunk=7), _exchange(port, batches[2], chunk=1000))

    results, counts = _run_bridge(kafka_bootstrap, kafka_topics.reports, scenario)
    for c, acks in enumerate(results):
        assert [_ack_fields(a)["MSA"][1:3] for a in acks] == [["AA", f"CTL{10 * c + i}"] for i in range(4)]
    assert counts["AA"] == 12
    stored = _consume(kafka_bootstrap, kafka_topics.reports, 12)
    assert sorted(m.key().decode() for m in stored) == sorted(f"ACC-{REPORTS[(10 * c + i) % 12].stem}-{10 * c + i}" for c in range(3) for i in range(4))


@pytest.mark.kafka
def test_ae_for_garbage_and_oversize_then_connection_still_works(kafka_bootstrap, kafka_topics):
    no_text = b"MSH|^~\\&|RIS|HOSP|||20250314||ORU^R01|BAD-2|P|2.5.1\rPID|1||123\rOBR|1||F1"
    big = _message(1)
    payloads = [b"this is not HL7 at all", no_text, big, _message(2)]

    async def scenario(port):
        # whole frames in one write, then the big frame again in 512-byte pieces (discarded while read)
        return await _exchange(port, payloads) + await _exchange(port, [big, _message(2)], chunk=512)

    acks, counts = _run_bridge(kafka_bootstrap, kafka_topics.reports, scenario, max_frame_bytes=len(big) - 1)
    garbage, missing, oversize, good, oversize_split, good_split = (_ack_fields(a) for a in acks)
    assert garbage["MSA"][1] == "AE" and garbage["MSA"][2] == "" and "MSH" in garbage["MSA"][3]
    assert garbage["ERR"][3].startswith("100^")
    assert missing["MSA"][1:3] == ["AE", "BAD-2"] and "no report text" in missing["MSA"][3]
    assert missing["ERR"][3].startswith("101^") and "no report text" in missing["ERR"][8]
    assert oversize["MSA"][1:3] == ["AE", "CTL1"] and "maximum frame size" in oversize["MSA"][3]
    assert good["MSA"][1:3] == ["AA", "CTL2"]
    assert oversize_split["MSA"][1:3] == ["AE", "CTL1"] and good_split["MSA"][1:3] == ["AA", "CTL2"]
    assert counts == {"AA": 2, "AE": 4, "AR": 0}
    stored = _consume(kafka_bootstrap, kafka_topics.reports, 2)
    assert [m.key() for m in stored] == [b"ACC-0003-2", b"ACC-0003-2"]


def test_ar_when_kafka_unreachable():
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    acks, counts = _run_bridge(closed, "cmr.reports", lambda port: _exchange(port, [_message(3), b"garbage"]), delivery_timeout_s=2.0)
    unavailable, garbage = (_ack_fields(a) for a in acks)
    assert unavailable["MSA"][1:3] == ["AR", "CTL3"] and "Kafka" in unavailable["MSA"][3]
    assert unavailable["ERR"][3].startswith("207^")
    assert garbage["MSA"][1] == "AE"  # decoding does not need Kafka
    assert counts == {"AA": 0, "AE": 1, "AR": 1}
    assert time.monotonic() - started < 30


@pytest.mark.kafka
def test_produce_and_tail(kafka_bootstrap, kafka_topics, tmp_path: Path, capsys):
    from producer import publish, tail

    settings = get_settings()
    for report in REPORTS[:2]:
        (tmp_path / report.name).write_bytes(report.read_bytes())
        (tmp_path / f"{report.stem}.json").write_bytes(report.with_suffix(".json").read_bytes())  # truth: skipped
    (tmp_path / "x.hl7").write_bytes(_message(4))
    (tmp_path / "empty.txt").write_bytes(b"")

    files = publish.collect_files([tmp_path])
    prepared, rejected = [], []
    for path in files:
        try:
            item = publish.prepare(path, wrap="fhir" if path.stem == "0002" else None, settings=settings)
        except Exception as exc:  # noqa: BLE001 - the test wants to see which
            rejected.append((path.name, type(exc).__name__))
            continue
        if item is not None:
            prepared.append(item)
    assert rejected == [("empty.txt", "DecodeError")]
    assert sorted((p.key, p.fmt) for p in prepared) == [("0001", "text"), ("0002", "fhir"), ("ACC-0005-4", "hl7v2")]
    delivered, failed = publish.publish(prepared, kafka_topics.reports, publish.producer_config(kafka_bootstrap, settings))
    assert (delivered, failed) == (3, 0)

    out = io.StringIO()
    count = tail.tail(kafka_bootstrap, kafka_topics.reports, from_beginning=True, idle_exit_s=3.0, max_messages=10, out=out, config=admin_config(kafka_bootstrap))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert count == 3 and len(lines) == 3
    by_key = {line["key"]: line for line in lines}
    assert by_key["0002"]["value"]["resourceType"] == "DiagnosticReport"  # JSON values are parsed
    assert by_key["0002"]["headers"]["content-type"] == "application/fhir+json"
    assert "value_b64" in by_key["0001"] and "value_b64" in by_key["ACC-0005-4"]
    assert {"partition", "offset", "topic"} <= set(by_key["0001"])
