"""End-to-end streaming benchmark on the real local broker, beside the raw Kafka rate.

Three numbers from one run on the same broker and the same messages:
1. raw Kafka: produce N report messages (idempotent producer) and consume them back (plain
   read_committed consumer, no processing): messages/s each way;
2. throughput: the full consumer (decode, de-identify, extract with the rules backend, score,
   map to FHIR, transactional produce of all outputs with offsets) over the N-message backlog;
3. latency: messages produced at a steady rate below capacity while the consumer runs;
   p50/p99 from each input's Kafka timestamp to the commit of its outputs.

Usage: python bench/bench_streaming.py [--n 3000] [--rate 100] [--seconds 15] [--backend rules]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def report_messages(n: int, prefix: str = "bench") -> list[tuple[str, bytes, list]]:
    """n messages cycling through the sample reports and the three input formats."""
    from consumer.codecs import CONTENT_TYPES, encode

    folders = [REPO.parent / "shared" / "data" / "dev", REPO / "data" / "synth-sample"]
    texts = [p.read_text() for folder in folders if folder.exists() for p in sorted(folder.glob("*.txt"))]
    formats = ("text", "hl7v2", "fhir")
    out = []
    for i in range(n):
        fmt = formats[i % 3]
        rid = f"{prefix}-{i:06d}"
        out.append((rid, encode(texts[i % len(texts)], fmt, rid), [("content-type", CONTENT_TYPES[fmt].encode())]))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    from confluent_kafka import Consumer, Producer

    from cmrx.config import TopicSettings, get_settings
    from cmrx.kafka_local import delete_topics, ensure_broker, ensure_topics, topic_names
    from consumer.app import StreamProcessor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency phase")
    parser.add_argument("--backend", default="rules")
    args = parser.parse_args()

    settings = get_settings().model_copy(deep=True)
    tag = uuid.uuid4().hex[:6]
    settings.topics = TopicSettings(**{k: f"{v}.bench-{tag}" if isinstance(v, str) else v
                                       for k, v in settings.topics.model_dump().items()})
    settings.extraction.backend = args.backend
    settings.runtime.metrics_port = 0
    settings.runtime.workers = 1
    bootstrap = ensure_broker(settings)
    ensure_topics(bootstrap, settings)
    messages = report_messages(args.n)
    paced_messages = report_messages(int(args.rate * args.seconds) + 1, prefix="paced")
    size = sum(len(v) for _, v, _ in messages)
    base = settings.kafka.client_config() | {"bootstrap.servers": bootstrap}

    try:
        producer = Producer(base | {"enable.idempotence": True, "linger.ms": 5})
        t0 = time.perf_counter()
        for key, value, headers in messages:
            while True:
                try:
                    producer.produce(settings.topics.reports, key=key, value=value, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)
        produce_s = time.perf_counter() - t0

        reader = Consumer(base | {"group.id": f"raw-{tag}", "auto.offset.reset": "earliest",
                                  "isolation.level": "read_committed", "enable.auto.commit": False})
        reader.subscribe([settings.topics.reports])
        got, t0 = 0, time.perf_counter()
        while got < args.n and time.perf_counter() - t0 < 120:
            got += sum(1 for m in reader.consume(500, 1.0) if not m.error())
        consume_s = time.perf_counter() - t0
        reader.close()

        settings.kafka.group_id = f"bench-{tag}"
        settings.kafka.transactional_id = f"bench-{tag}"
        processor = StreamProcessor(settings, bootstrap, instance_id="bench")
        processor.keep_summary = True
        done = threading.Event()

        def consume() -> None:
            processor.run(idle_exit_s=3.0)
            done.set()

        pacer_done = threading.Event()

        def paced() -> None:
            """Latency phase: starts once the backlog is drained, steady rate below capacity."""
            while len(processor.summary) < args.n and not done.is_set():
                time.sleep(0.05)
            p = Producer(base | {"enable.idempotence": True, "linger.ms": 0})
            start, i = time.perf_counter(), 0
            while time.perf_counter() - start < args.seconds:
                key, value, headers = paced_messages[i % len(paced_messages)]
                p.produce(settings.topics.reports, key=key, value=value, headers=headers)
                p.poll(0)
                i += 1
                time.sleep(max(0.0, start + i / args.rate - time.perf_counter()))
            p.flush(30)
            pacer_done.set()

        worker = threading.Thread(target=consume, daemon=True)
        pacer = threading.Thread(target=paced, daemon=True)
        t0 = time.perf_counter()
        worker.start()
        pacer.start()
        pacer.join()
        worker.join()
        backlog = [p for p in processor.summary if (p.report_id or "").startswith("bench-")]
        first_commit = min(p.committed_ms for p in backlog)
        last_commit = max(p.committed_ms for p in backlog)
        start_ms = min(p.timestamp_ms for p in backlog)
        throughput = len(backlog) / max(1e-9, (last_commit - start_ms) / 1000)
        paced_results = [p for p in processor.summary if (p.report_id or "").startswith("paced-")]
        latencies = [(p.committed_ms - p.timestamp_ms) / 1000 for p in paced_results if p.timestamp_ms]
    finally:
        delete_topics(bootstrap, topic_names(settings), settings)

    print(f"messages: {args.n} reports ({size / args.n / 1024:.1f} KiB mean) in text/HL7/FHIR; backend {args.backend}")
    print(f"raw Kafka produce: {args.n / produce_s:,.0f} msg/s   raw Kafka consume (read_committed): {args.n / consume_s:,.0f} msg/s")
    print(f"end-to-end throughput (backlog of {len(backlog)}): {throughput:,.1f} reports/s "
          f"(first commit after {(first_commit - start_ms) / 1000:.1f} s)")
    if latencies:
        print(f"end-to-end latency at {args.rate:g} msg/s for {args.seconds:g} s ({len(latencies)} reports): "
              f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
