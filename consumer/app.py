"""``cmrx run``: the consume-extract-produce loop, exactly once.

One loop, in the shape of confluent-kafka's transactional example: consume a batch, process it
(decode -> de-identify -> extract -> score -> map), produce every output and the consumed offsets
in one transaction, commit. A crash anywhere before the commit leaves no visible output and the
offsets uncommitted, so the batch is processed again; read_committed readers never see a
duplicate. A message that cannot be processed goes to the dead-letter topic in the same
transaction, so it is never lost and never blocks the stream.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cmrx.config import Settings, get_settings
from cmrx.logs import get_logger
from consumer import metrics
from consumer.routing import OutRecord, dead_letter, outputs_for
from extraction.backends import BackendError
from extraction.pipeline import Extractor

log = get_logger("cmrx.consumer")


@dataclass
class Processed:
    """The outcome of one input message: what to produce, and a little for the summary."""

    outputs: list[OutRecord]
    report_id: str | None = None
    category: str | None = None
    published: int = 0
    for_review: int = 0
    dead_letter_stage: str | None = None
    timestamp_ms: int | None = None
    committed_ms: float | None = None


class StreamProcessor:
    def __init__(self, settings: Settings, bootstrap: str, *, extractor: Extractor | None = None,
                 instance_id: str | None = None) -> None:
        from confluent_kafka import Consumer, Producer

        self.settings = settings
        self.topics = settings.topics
        self.extractor = extractor or Extractor(settings.extraction.backend, settings)
        self.instance_id = instance_id or os.environ.get("CMRX_INSTANCE_ID") or socket.gethostname()
        base = settings.kafka.client_config() | {"bootstrap.servers": bootstrap}
        self.consumer = Consumer(base | {
            "group.id": settings.kafka.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "max.poll.interval.ms": 900_000,  # an LLM batch may take minutes
            "partition.assignment.strategy": "cooperative-sticky",
            # Static membership: a restarted replica (same instance id) takes its partitions back
            # at once instead of waiting for the crashed member's session to expire.
            "group.instance.id": f"{settings.kafka.group_id}-{self.instance_id}",
            "session.timeout.ms": 30_000,
            "enable.partition.eof": True,
        })
        # A stable transactional.id per instance lets a restarted instance fence its crashed self
        # and abort the open transaction at once instead of waiting for the transaction timeout.
        self.producer = Producer(base | {
            "transactional.id": f"{settings.kafka.transactional_id}-{self.instance_id}",
            "enable.idempotence": True,
            "transaction.timeout.ms": 60_000,
            "message.max.bytes": 20_000_000,
            "linger.ms": settings.kafka.linger_ms,
            "compression.type": settings.kafka.compression_type,
        })
        self.producer.init_transactions(30)
        from consumer.model_updates import ModelUpdates

        # Promoted adapters arrive on the models topic; applied between batches, never mid-batch.
        self.model_updates = ModelUpdates(settings, bootstrap, self.extractor.backend)
        self._workers = settings.extraction_workers()
        self.pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="extract")
        self._stopping = False
        self._at_eof: set[tuple[str, int]] = set()
        self._ever_assigned = False
        self.summary: list[Processed] = []
        self.keep_summary = False
        self.partitions: set[tuple[str, int]] = set()  # assigned now (cooperative: changes incrementally)
        self.on_partitions: Callable[[set[tuple[str, int]]], None] | None = None  # called after each change
        self._warm_up()

    def _warm_up(self) -> None:
        """First-use costs (FHIR templates, codec imports) at start-up instead of on the first
        reports; best effort."""
        from consumer.codecs import CONTENT_TYPES, decode_message, encode
        from consumer.fhir_mapping import warm_up

        try:
            warm_up()
            for fmt in ("hl7v2", "fhir"):
                decode_message(encode("LVEF 55 %", fmt, "warm-up"), [("content-type", CONTENT_TYPES[fmt].encode())],
                               settings=self.settings)
        except Exception as exc:  # noqa: BLE001 - a warm-up failure only costs time later
            log.warning("consumer.warm_up_failed", error_type=type(exc).__name__)

    # ------------------------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        """SIGTERM/SIGINT: finish (commit or abort) the open batch, then leave the group."""
        self._stopping = True

    def run(self, idle_exit_s: float | None = None) -> int:
        self.consumer.subscribe([self.topics.reports], on_assign=self._assigned, on_revoke=self._revoked,
                                on_lost=self._revoked)
        log.info("consumer.started", topic=self.topics.reports, group=self.settings.kafka.group_id,
                 instance=self.instance_id, backend=self.extractor.backend.name)
        last_message = time.monotonic()
        last_lag = 0.0
        _tune_gc()
        try:
            while not self._stopping:
                messages = [m for m in self._poll() if not self._is_event(m)]
                now = time.monotonic()
                if now - last_lag > 10:
                    self._update_lag()
                    last_lag = now
                if not messages:
                    self.model_updates.poll()
                    if idle_exit_s is not None and now - last_message >= idle_exit_s and self._input_drained(now - last_message, idle_exit_s):
                        log.info("consumer.idle_exit", idle_s=idle_exit_s)
                        break
                    continue
                self._process_batch(messages)
                last_message = time.monotonic()  # idle counts from the end of the last batch
                self.model_updates.poll()
        finally:
            self.close()
        return 0

    def _poll(self) -> list:
        """One batch, which is one transaction: whatever is already fetched, up to batch_size,
        without waiting; when nothing is, wait for the first message and take what came with it.
        (``consume(n, timeout)`` alone waits for all n or the timeout: a second of latency per
        batch at low rates, small transactions under a backlog.)"""
        cfg = self.settings.runtime
        messages = self.consumer.consume(num_messages=cfg.batch_size, timeout=0)
        if not messages:
            messages = self.consumer.consume(num_messages=1, timeout=cfg.poll_timeout_s)
            if messages and cfg.batch_size > 1:
                messages += self.consumer.consume(num_messages=cfg.batch_size - 1, timeout=0)
        return messages

    def _assigned(self, consumer, partitions: list) -> None:
        """Rebalance callback (cooperative: only the added partitions; the client assigns them
        after this returns). Logged, so an operator sees which replica reads what."""
        self.partitions |= {(tp.topic, tp.partition) for tp in partitions}
        self._partitions_changed("assigned", partitions)

    def _revoked(self, consumer, partitions: list) -> None:
        self.partitions -= {(tp.topic, tp.partition) for tp in partitions}
        self._partitions_changed("revoked", partitions)

    def _partitions_changed(self, change: str, partitions: list) -> None:
        log.info(f"consumer.partitions_{change}", instance=self.instance_id,
                 partitions=sorted(tp.partition for tp in partitions), now=sorted(p for _, p in self.partitions))
        if self.on_partitions is not None:
            self.on_partitions(set(self.partitions))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.model_updates.close()
        self.consumer.close()
        self.producer.flush(10)
        log.info("consumer.stopped", instance=self.instance_id)

    # ------------------------------------------------------------------------------------------
    def _process_batch(self, messages: list) -> None:
        from confluent_kafka import KafkaException

        metrics.CONSUMED.inc(len(messages))
        started = time.perf_counter()
        try:
            if self._workers == 1:  # CPU-bound backend: no thread hand-off per message
                results = [self._process_message(m) for m in messages]
            else:
                results = list(self.pool.map(self._process_message, messages))
        except BackendError as exc:
            # The backend is down, not the message: retry the batch later, commit nothing.
            metrics.BACKEND_ERRORS.inc()
            log.warning("consumer.backend_unavailable", error=str(exc)[:200], batch=len(messages))
            self._rewind()
            time.sleep(min(30.0, self.settings.llm.timeout_s / 4))
            return
        processed = time.perf_counter()
        produce = self.producer.produce
        try:
            self.producer.begin_transaction()
            for result in results:
                for out in result.outputs:
                    produce(out.topic, key=out.key, value=out.value, headers=out.headers)
            positions = self.consumer.position(self.consumer.assignment())
            self.producer.send_offsets_to_transaction(positions, self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(60)
        except KafkaException as exc:
            error = exc.args[0]
            metrics.TRANSACTIONS.labels("aborted").inc()
            log.error("consumer.transaction_failed", error=str(error), retriable=error.retriable(),
                      abortable=error.txn_requires_abort())
            if error.txn_requires_abort():
                self.producer.abort_transaction(30)
                self._rewind()
                return
            raise  # fatal (e.g. fenced by a newer instance): stop, do not produce duplicates
        metrics.TRANSACTIONS.labels("committed").inc()
        now_ms = time.time() * 1000
        published = for_review = dead_lettered = 0
        for result in results:
            result.committed_ms = now_ms
            published += result.published
            for_review += result.for_review
            if result.timestamp_ms:
                metrics.LATENCY.observe(max(0.0, (now_ms - result.timestamp_ms) / 1000))
            if result.dead_letter_stage:
                dead_lettered += 1
                metrics.DEAD_LETTERED.labels(result.dead_letter_stage).inc()
        metrics.PUBLISHED.inc(published)
        metrics.FOR_REVIEW.inc(for_review)
        # One line per batch (a line per report cost ~30 us of a ~10 ms report): report ids, counts
        # and where the time went; dead letters are still logged one by one.
        log.info("consumer.batch_committed", reports=len(results), report_ids=[r.report_id for r in results if r.report_id],
                 published=published, for_review=for_review, dead_lettered=dead_lettered,
                 process_s=round(processed - started, 4), commit_s=round(time.perf_counter() - processed, 4))
        if self.keep_summary:
            self.summary.extend(results)

    def _process_message(self, message) -> Processed:
        from consumer.codecs import DecodeError, decode_message

        ts_type, ts = message.timestamp()
        headers = message.headers() or []

        def dlq(stage: str, error: BaseException) -> Processed:
            where = dict(topic=message.topic(), partition=message.partition(), offset=message.offset())
            log.warning("consumer.dead_letter", stage=stage, error_type=type(error).__name__,
                        reason=getattr(error, "reason", type(error).__name__), **where)
            out = dead_letter(stage, error, value=message.value(), key=message.key(), headers=headers,
                              topics=self.topics, **where)
            return Processed([out], dead_letter_stage=stage, timestamp_ms=ts if ts_type else None)

        try:
            envelope = decode_message(message.value(), headers, message.key(), settings=self.settings)
        except DecodeError as exc:
            return dlq("decode", exc)
        started = time.perf_counter()
        try:
            record = self.extractor.extract(envelope)
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure belongs to this message
            return dlq("extract", exc)
        metrics.EXTRACTION_SECONDS.observe(time.perf_counter() - started)
        try:
            outputs = outputs_for(record, self.topics)
        except Exception as exc:  # noqa: BLE001
            return dlq("map", exc)
        published = sum(1 for f in record.fields if f.route == "publish" and f.value is not None)
        for_review = sum(1 for f in record.fields if f.route == "review")
        return Processed(outputs, record.report_id, record.category.value, published, for_review,
                         timestamp_ms=ts if ts_type else None)

    def _rewind(self) -> None:
        """After an abort, go back to the committed offsets so the batch is consumed again."""
        assignment = self.consumer.assignment()
        if not assignment:
            return
        for tp in self.consumer.committed(assignment, timeout=30):
            if tp.offset < 0:
                from confluent_kafka import OFFSET_BEGINNING

                tp.offset = OFFSET_BEGINNING
            self.consumer.seek(tp)

    def _update_lag(self) -> None:
        """Lag from the high watermarks the fetch responses already brought (cached: no broker
        round trip, which blocked the loop ~0.3 s per partition under load)."""
        try:
            for tp in self.consumer.position(self.consumer.assignment()):
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    metrics.LAG.labels(str(tp.partition)).set(max(0, high - tp.offset))
        except Exception as exc:  # noqa: BLE001 - lag is best effort
            log.debug("consumer.lag_failed", error=str(exc))

    def _is_event(self, message) -> bool:
        """Partition EOF and errors are events, not reports; EOF marks are kept for --idle-exit."""
        from confluent_kafka import KafkaError

        error = message.error()
        where = (message.topic(), message.partition())
        if error is None:
            self._at_eof.discard(where)
            return False
        if error.code() == KafkaError._PARTITION_EOF:
            self._at_eof.add(where)
        else:
            log.warning("consumer.partition_error", error=str(error))
        return True

    def _input_drained(self, idle_s: float, idle_exit_s: float) -> bool:
        """Idle means: every assigned partition is read to its end (not merely a rebalance pause).
        A replica that never gets a partition (more replicas than partitions) gives up after 6x."""
        assignment = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        if assignment:
            self._ever_assigned = True
            return assignment <= self._at_eof
        return idle_s >= 6 * idle_exit_s


def _tune_gc() -> None:
    """The loop allocates ~1,000 short-lived objects a report while ~200,000 long-lived ones
    (models, catalogs, compiled FHIR models) stay: move those out of the collector's sight and
    collect the young generation less often. About 15% of the CPU time of a report."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default=None, help="backend name (rules, local, vllm); default from settings")
    parser.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                        help="exit cleanly once the input has been idle this long (batch and demo use)")
    parser.add_argument("--instance-id", default=None, help="stable id of this replica (transactional.id suffix)")
    parser.add_argument("--replicas", type=int, default=1, metavar="N",
                        help="run N replica processes in the consumer group (one per core; instance ids ID-0..ID-N-1, "
                             "metrics on consecutive ports); the input topic needs at least N partitions")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "replicas", 1) > 1:
        return run_replicas(args)
    from cmrx.kafka_local import ensure_broker, ensure_topics

    settings = get_settings().model_copy(deep=True)
    if args.backend:
        settings.extraction.backend = args.backend
    bootstrap = ensure_broker(settings)
    ensure_topics(bootstrap, settings)
    metrics.serve(settings.runtime.metrics_port)
    processor = StreamProcessor(settings, bootstrap, instance_id=args.instance_id)
    signal.signal(signal.SIGTERM, processor.stop)
    signal.signal(signal.SIGINT, processor.stop)
    return processor.run(idle_exit_s=args.idle_exit)


def run_replicas(args: argparse.Namespace) -> int:
    """``--replicas N``: N ``cmrx run`` processes, each one replica of the loop above with its own
    stable instance id (so its own transactional.id and static group.instance.id). This process
    only starts them, passes SIGTERM/SIGINT on, and waits; the exit code is the worst of theirs."""
    import subprocess
    import sys

    from cmrx.kafka_local import ensure_broker, ensure_topics

    settings = get_settings()
    bootstrap = ensure_broker(settings)
    ensure_topics(bootstrap, settings)
    base = args.instance_id or os.environ.get("CMRX_INSTANCE_ID") or socket.gethostname()
    children = []
    for index in range(args.replicas):
        command = [sys.executable, "-m", "cmrx.cli", "run", "--instance-id", f"{base}-{index}"]
        if args.backend:
            command += ["--backend", args.backend]
        if args.idle_exit is not None:
            command += ["--idle-exit", str(args.idle_exit)]
        port = settings.runtime.metrics_port
        env = os.environ | {"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                            "CMRX_RUNTIME__METRICS_PORT": str(port + index if port else 0)}
        children.append(subprocess.Popen(command, env=env))
    log.info("consumer.replicas", replicas=args.replicas, instance_ids=[f"{base}-{i}" for i in range(args.replicas)])

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, key=abs)
