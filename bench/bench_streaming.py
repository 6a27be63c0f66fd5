"""End-to-end streaming benchmark on the real local broker, beside the raw Kafka rate.

Numbers from one run on the same broker and the same messages:
1. raw Kafka: produce the N report messages (idempotent producer) to a topic of their own and
   consume them back (plain read_committed consumer, no processing): messages/s each way. It
   runs after the warm-up below, while the replicas wait idle for the backlog;
2. throughput: the full consumer (decode, de-identify, extract with the rules backend, score,
   map to FHIR, transactional produce of all outputs with offsets) as ``--replicas`` processes in
   one consumer group ("scale = partitions x replicas"), each with its own static
   group.instance.id and transactional.id (instance ids bench-0, bench-1, ...). The replicas load
   and join the group; once the group holds every partition, ``--warmup`` reports of their own go
   through the whole loop first (a freshly started broker JVM is not yet compiled hot: until it has
   served a few thousand reports it costs up to 4x the CPU a report), then the N messages go to the
   input topic, as to a running deployment. Reported: reports/s of the group from the first
   message any replica consumed to the last commit, from the first input's Kafka timestamp, and in
   steady state (commits between the 10th and 90th percentile);
3. latency: messages produced at a steady rate below capacity while the replicas run;
   p50/p99 from each input's Kafka timestamp to the commit of its outputs.

The reports are a distinct stream: the 12 dev reports and synthetic reports of every development
layout (``training.synth``, a seed of their own), each text once, in the three formats in turn;
the latency phase has its own seed. (A few dozen texts in a cycle would keep the rules backend's
per-line cache warm and flatter it.) The CPU per backlog report of the replicas (all their
threads) and of the local broker's JVM is printed too: the replica's minus the sum of the stages
is what the Kafka loop around them costs.

``--stages`` instead prints the CPU time of each stage of a message without Kafka (what
``StreamProcessor._process_message`` calls, over distinct text/HL7/FHIR messages of its own).

Usage: python bench/bench_streaming.py [--n 3000] [--rate 100] [--seconds 15] [--backend rules]
       [--replicas 2] [--partitions 6] [--batch-size 256] [--warmup 1000]
       python bench/bench_streaming.py --stages [--n 300]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


DEV_DIR = REPO.parent / "shared" / "data" / "dev"
BACKLOG_SEED, PACED_SEED, WARM_SEED, STAGE_SEED, PIPELINE_WARM_SEED = 9300, 9301, 9302, 9310, 9303  # only here


def report_texts(n: int, seed: int, *, dev: bool = False) -> list[str]:
    """``n`` distinct report texts: the dev reports first (when ``dev``), then synthetic reports of
    every development layout from ``seed`` (``training.synth``, as bench_rules.py does). Every text
    is new to the rules backend's per-line cache except lines that really repeat (boilerplate),
    so the stream costs what a stream of real new reports would."""
    from training.synth import generate
    from training.synth.layouts import DEV_LAYOUTS

    texts = [p.read_text() for p in sorted(DEV_DIR.glob("*.txt"))][:n] if dev and DEV_DIR.exists() else []
    texts += [r.text for r in generate(n - len(texts), seed=seed, layouts=list(DEV_LAYOUTS))] if n > len(texts) else []
    if len(set(texts)) != len(texts):
        raise SystemExit(f"report texts of seed {seed} are not all distinct")
    return texts


def report_messages(texts: list[str], prefix: str = "bench") -> list[tuple[str, bytes, list]]:
    """One message per text, in the three input formats in turn (text, HL7 v2, FHIR)."""
    from consumer.codecs import CONTENT_TYPES, encode

    formats = ("text", "hl7v2", "fhir")
    out = []
    for i, text in enumerate(texts):
        fmt = formats[i % 3]
        rid = f"{prefix}-{i:06d}"
        out.append((rid, encode(text, fmt, rid), [("content-type", CONTENT_TYPES[fmt].encode())]))
    return out


def steady_rate(commit_ms: list[float], low: float = 0.1, high: float = 0.9) -> float | None:
    """Reports/s between the commits of the ``low`` and ``high`` quantiles of the sorted commit
    times: the group's rate once running, without the first fetch and the last partition's tail."""
    if len(commit_ms) < 10:
        return None
    i, j = int(low * (len(commit_ms) - 1)), int(high * (len(commit_ms) - 1))
    span_s = (commit_ms[j] - commit_ms[i]) / 1000
    return (j - i) / span_s if span_s > 0 else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# ---------------------------------------------------------------------------------- stage costs


def stage_costs(n: int, backend: str, passes: int = 3) -> dict[str, float]:
    """CPU ms per message of each stage, without Kafka; the best of ``passes`` passes (the machine
    is shared), each over its own ``n`` distinct reports (the first pass also has the dev
    reports), after a warm-up on other reports. The loop also tunes the garbage collector as
    ``cmrx run`` does."""
    from cmrx.config import get_settings
    from consumer import routing
    from consumer.app import _tune_gc
    from consumer.codecs import decode_message
    from consumer.fhir_mapping import render_bundle, warm_up
    from extraction.pipeline import Extractor, build_record

    settings = get_settings().model_copy(deep=True)
    settings.extraction.backend = backend
    extractor = Extractor(backend, settings)
    cfg = settings.extraction
    warm_up()
    for key, value, headers in report_messages(report_texts(30, WARM_SEED), prefix="warm"):  # hl7apy, regexes, lexicon
        routing.outputs_for(extractor.extract(decode_message(value, headers, key.encode(), settings=settings)), settings.topics)
    runs = [report_messages(report_texts(n, STAGE_SEED + index, dev=index == 0), prefix=f"stage{index}") for index in range(passes)]
    _tune_gc()
    names = ["decode", "de-identify + clean", "backend", "vote + score + record", "record JSON",
             "FHIR Bundle + validation + JSON", "review task + JSON"]
    best: dict[str, float] = {}
    clock = time.process_time
    for messages in runs:
        totals = dict.fromkeys(names, 0.0)
        for key, value, headers in messages:
            t0 = clock()
            envelope = decode_message(value, headers, key.encode(), settings=settings)
            t1 = clock()
            text = extractor.prepare(envelope.text)
            t2 = clock()
            output = extractor.backend.extract(text, n_samples=cfg.samples)
            t3 = clock()
            record = build_record(envelope, text, output, extractor.backend, n_samples=cfg.samples,
                                  threshold=cfg.threshold, combiner=cfg.combiner)
            t4 = clock()
            record.model_dump_json().encode()
            t5 = clock()
            render_bundle(record)
            t6 = clock()
            task = routing.review_task(record)
            if task:
                task.model_dump_json().encode()
            t7 = clock()
            for name, seconds in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6)):
                totals[name] += seconds
        for name in names:
            ms = totals[name] / len(messages) * 1000
            best[name] = min(best.get(name, ms), ms)
    best["total"] = sum(best[name] for name in names)
    return best


# ------------------------------------------------------------------------------------- replicas


def _replica(index: int, settings_data: dict, bootstrap: str, committed, stop, results, ready, go,
             assigned) -> None:
    """One replica process: the real StreamProcessor loop until told to stop; sends back, per
    report, (report id, input timestamp ms, commit ms) and when its first batch arrived. It joins
    the group once every replica is loaded (``ready``/``go``) and reports how many partitions it
    holds (``assigned``): the backlog is produced once the group holds them all."""
    from cmrx.config import Settings
    from consumer.app import StreamProcessor

    settings = Settings(**settings_data)
    processor = StreamProcessor(settings, bootstrap, instance_id=f"bench-{index}")
    processor.keep_summary = True
    first_batch_ms: list[float] = []
    backlog_cpu = [0.0, 0.0]  # CPU s of this process at its first batch, after its last backlog batch
    process_batch = processor._process_batch

    def counted(messages: list) -> None:
        if not first_batch_ms and any((m.key() or b"").startswith(b"bench-") for m in messages):  # not warm-up
            first_batch_ms.append(time.time() * 1000)
            backlog_cpu[0] = backlog_cpu[1] = time.process_time()
        before = len(processor.summary)
        process_batch(messages)
        if any((p.report_id or "").startswith("bench-") for p in processor.summary[before:]):
            backlog_cpu[1] = time.process_time()
        with committed.get_lock():
            committed.value += len(processor.summary) - before

    processor._process_batch = counted

    def partitions(now: set) -> None:
        assigned[index] = len(now)

    processor.on_partitions = partitions
    threading.Thread(target=lambda: (stop.wait(), processor.stop()), daemon=True).start()
    ready.release()
    go.wait()
    processor.run(idle_exit_s=None)
    cpu_s = time.process_time()
    results.put((index, first_batch_ms[0] if first_batch_ms else None, cpu_s, backlog_cpu[1] - backlog_cpu[0],
                 [(p.report_id, p.timestamp_ms, p.committed_ms) for p in processor.summary]))


def _broker_cpu_s(settings) -> float | None:
    """CPU seconds the local broker's JVM has used so far (None: not ours, or not Linux)."""
    try:
        from cmrx.kafka_local import _our_broker_pid, paths

        pid = _our_broker_pid(paths(settings))
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except Exception:  # noqa: BLE001 - best effort
        return None


def main() -> int:
    from confluent_kafka import Consumer, Producer

    from cmrx.config import TopicSettings, get_settings
    from cmrx.kafka_local import delete_topics, ensure_broker, ensure_topics, topic_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency phase")
    parser.add_argument("--backend", default="rules")
    parser.add_argument("--replicas", type=int, default=1, help="consumer processes in the group")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the input topic (>= replicas)")
    parser.add_argument("--batch-size", type=int, default=256, help="most messages per poll, so per transaction")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="reports through the whole loop before the measured backlog (0: measure a cold start)")
    parser.add_argument("--stages", action="store_true", help="only print CPU ms per stage without Kafka")
    args = parser.parse_args()

    if args.stages:
        costs = stage_costs(args.n, args.backend)
        print(f"CPU ms per message, {args.n} distinct reports a pass in text/HL7/FHIR, backend {args.backend}, "
              f"best of 3 passes (load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())}):")
        for name, ms in costs.items():
            print(f"  {name:28s} {ms:7.2f}")
        return 0

    settings = get_settings().model_copy(deep=True)
    tag = uuid.uuid4().hex[:6]
    settings.topics = TopicSettings(**{k: f"{v}.bench-{tag}" if isinstance(v, str) else v
                                       for k, v in settings.topics.model_dump().items()})
    settings.topics.partitions = max(args.partitions, args.replicas)
    settings.extraction.backend = args.backend
    settings.runtime.metrics_port = 0
    settings.runtime.workers = 1
    settings.runtime.batch_size = args.batch_size
    settings.kafka.group_id = f"bench-{tag}"
    settings.kafka.transactional_id = f"bench-{tag}"
    bootstrap = ensure_broker(settings)
    ensure_topics(bootstrap, settings)
    messages = report_messages(report_texts(args.n, BACKLOG_SEED, dev=True))
    paced_messages = report_messages(report_texts(int(args.rate * args.seconds) + 1, PACED_SEED), prefix="paced")
    warm_messages = report_messages(report_texts(args.warmup, PIPELINE_WARM_SEED), prefix="warm") if args.warmup else []
    size = sum(len(v) for _, v, _ in messages)
    base = settings.kafka.client_config() | {"bootstrap.servers": bootstrap}
    load_before = os.getloadavg()

    raw_topic = f"{settings.topics.reports}.raw"
    raw_settings = settings.model_copy(deep=True)
    raw_settings.topics.reports = raw_topic
    ensure_topics(bootstrap, raw_settings)

    def produce_all(topic: str, batch: list | None = None) -> float:
        """Seconds to produce every backlog message (or ``batch``) to ``topic`` (idempotent producer, acked)."""
        producer = Producer(base | {"enable.idempotence": True, "linger.ms": 5})
        t0 = time.perf_counter()
        for key, value, headers in messages if batch is None else batch:
            while True:
                try:
                    producer.produce(topic, key=key, value=value, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)
        return time.perf_counter() - t0

    try:
        # The replicas load, join the group and hold every partition before the backlog arrives
        # (a member joining later makes the group rebalance, and waits for the busy ones' next poll).
        context = multiprocessing.get_context("spawn")  # no fork of a process with librdkafka threads
        committed = context.Value("q", 0)
        assigned = context.Array("i", args.replicas)
        stop = context.Event()
        results = context.Queue()
        ready, go = context.Semaphore(0), context.Event()
        data = settings.model_dump(mode="json")
        replicas = [context.Process(target=_replica, args=(i, data, bootstrap, committed, stop, results, ready, go,
                                                           assigned), daemon=True) for i in range(args.replicas)]
        for replica in replicas:
            replica.start()
        for _ in replicas:
            if not ready.acquire(timeout=300):
                raise RuntimeError("a replica did not load within 300 s")
        go.set()
        deadline = time.monotonic() + 120
        while not (sum(assigned) == settings.topics.partitions and min(assigned) > 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        warm = len(warm_messages)
        if warm:
            produce_all(settings.topics.reports, warm_messages)
            deadline = time.monotonic() + 600
            while committed.value < warm and time.monotonic() < deadline and all(r.is_alive() for r in replicas):
                time.sleep(0.05)

        # Raw Kafka on a topic of its own while the replicas sit idle (after the warm-up, so on the
        # same warm broker the backlog meets): the same messages, no processing.
        produce_s = produce_all(raw_topic)
        reader = Consumer(base | {"group.id": f"raw-{tag}", "auto.offset.reset": "earliest",
                                  "isolation.level": "read_committed", "enable.auto.commit": False})
        reader.subscribe([raw_topic])
        got, t0 = 0, time.perf_counter()
        while got < args.n and time.perf_counter() - t0 < 120:
            got += sum(1 for m in reader.consume(500, 1.0) if not m.error())
        consume_s = time.perf_counter() - t0
        reader.close()

        produce_all(settings.topics.reports)
        deadline = time.monotonic() + 3600
        broker_before = None  # (broker CPU s, reports committed) once the first backlog batch is committed
        while committed.value < warm + args.n and time.monotonic() < deadline and all(r.is_alive() for r in replicas):
            if broker_before is None and committed.value > warm:
                broker_before = (_broker_cpu_s(settings), committed.value)
            time.sleep(0.05)
        load_during = os.getloadavg()
        broker_after = (_broker_cpu_s(settings), committed.value)

        # Latency phase: starts once the backlog is drained, steady rate below capacity.
        p = Producer(base | {"enable.idempotence": True, "linger.ms": 0})
        start, i = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:
            key, value, headers = paced_messages[i % len(paced_messages)]
            p.produce(settings.topics.reports, key=key, value=value, headers=headers)
            p.poll(0)
            i += 1
            time.sleep(max(0.0, start + i / args.rate - time.perf_counter()))
        p.flush(30)
        deadline = time.monotonic() + 120
        while committed.value < warm + args.n + i and time.monotonic() < deadline and all(r.is_alive() for r in replicas):
            time.sleep(0.05)
        stop.set()
        outcomes = [results.get(timeout=120) for _ in replicas]
        for replica in replicas:
            replica.join(60)
    finally:
        delete_topics(bootstrap, [*topic_names(settings), raw_topic], settings)

    summary = [row for *_, rows in outcomes for row in rows]
    backlog = [row for row in summary if (row[0] or "").startswith("bench-")]
    first_consumed = min(first for _, first, *_ in outcomes if first is not None)
    last_commit = max(c for _, _, c in backlog)
    start_ms = min(t for _, t, _ in backlog)
    throughput = len(backlog) / max(1e-9, (last_commit - first_consumed) / 1000)
    throughput_from_input = len(backlog) / max(1e-9, (last_commit - start_ms) / 1000)
    steady = steady_rate(sorted(c for _, _, c in backlog))
    paced_results = [row for row in summary if (row[0] or "").startswith("paced-")]
    latencies = [(c - t) / 1000 for _, t, c in paced_results if t]
    per_replica = ", ".join(f"bench-{index}: {sum(1 for r in rows if (r[0] or '').startswith('bench-'))} reports, "
                            f"{cpu:.1f} s CPU" for index, _, cpu, _, rows in sorted(outcomes))
    replica_cpu_ms = sum(backlog_cpu for _, _, _, backlog_cpu, _ in outcomes) / max(1, len(backlog)) * 1000
    broker_cpu_ms = None
    if broker_before is not None and None not in (broker_before[0], broker_after[0]) and broker_after[1] > broker_before[1]:
        broker_cpu_ms = (broker_after[0] - broker_before[0]) / (broker_after[1] - broker_before[1]) * 1000

    print(f"messages: {args.n} reports ({size / args.n / 1024:.1f} KiB mean) in text/HL7/FHIR; backend {args.backend}; "
          f"{settings.topics.partitions} partitions, {args.replicas} replica(s), batch {args.batch_size}; {os.cpu_count()} CPUs; "
          f"{warm} warm-up reports first")
    print(f"load average (1/5/15 min): before {'/'.join(f'{x:.2f}' for x in load_before)}, "
          f"at the end of the backlog {'/'.join(f'{x:.2f}' for x in load_during)}")
    print(f"raw Kafka produce: {args.n / produce_s:,.0f} msg/s   raw Kafka consume (read_committed): {args.n / consume_s:,.0f} msg/s")
    print(f"end-to-end throughput (backlog of {len(backlog)}): {throughput:,.1f} reports/s from the first message consumed "
          f"({throughput_from_input:,.1f} reports/s from the first input's Kafka timestamp)")
    if steady is not None:
        print(f"steady state (commits between the 10th and 90th percentile of the backlog): {steady:,.1f} reports/s")
    print(f"replicas: {per_replica}")
    print(f"CPU per backlog report: replicas {replica_cpu_ms:.2f} ms (all their threads, first batch to last backlog batch)"
          + (f", broker {broker_cpu_ms:.2f} ms (after the first commit)" if broker_cpu_ms is not None else ""))
    if latencies:
        print(f"end-to-end latency at {args.rate:g} msg/s for {args.seconds:g} s ({len(latencies)} reports): "
              f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
