"""``cmrx demo``: the main job on the embedded default, end to end on a real broker.

Starts (or reuses) the local Kafka broker, creates the topics, publishes the sample reports as
plain text, HL7 v2 ORU^R01 and FHIR DiagnosticReport (plus one unreadable message, to show the
dead-letter path), runs the consumer with the default backend until the input is drained, and
prints a per-report summary and where to read the outputs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "dev"
FALLBACK_DATA = REPO / "data" / "synth-sample"
FORMATS = ("text", "hl7v2", "fhir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=None,
                        help=f"folder of sample reports (default: ../shared/data/dev, else {FALLBACK_DATA.relative_to(REPO)})")
    parser.add_argument("--backend", default=None, help="backend name; default from settings (rules)")
    parser.add_argument("--idle-exit", type=float, default=4.0, help="seconds of idle input before the consumer stops")


def _messages(folder: Path, run_tag: str) -> list[tuple[str, bytes, list[tuple[str, bytes]]]]:
    from consumer.codecs import CONTENT_TYPES, encode

    messages = []
    for txt in sorted(folder.glob("*.txt")):
        text = txt.read_text(encoding="utf-8")
        for fmt in FORMATS:
            report_id = f"{txt.stem}-{fmt}-{run_tag}"
            extra = {"hl7v2": {"subject_id": f"DEMO{txt.stem}"}, "fhir": {"subject_reference": f"Patient/DEMO{txt.stem}"}}
            value = encode(text, fmt, report_id, **extra.get(fmt, {}))
            messages.append((report_id, value, [("content-type", CONTENT_TYPES[fmt].encode())]))
    messages.append((f"poison-{run_tag}", b"\x00\x01 not a report \xff", [("content-type", b"text/plain")]))
    return messages


def run(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer
    from rich.console import Console
    from rich.table import Table

    from cmrx.config import get_settings
    from cmrx.kafka_local import ensure_broker, ensure_topics
    from consumer.app import StreamProcessor

    console = Console()
    folder = args.data or (DEFAULT_DATA if DEFAULT_DATA.exists() else FALLBACK_DATA)
    settings = get_settings().model_copy(deep=True)
    if args.backend:
        settings.extraction.backend = args.backend
    settings.runtime.metrics_port = 0
    console.print(f"[bold]cmrx demo[/bold]: reports from {folder}, backend {settings.extraction.backend}")
    bootstrap = ensure_broker(settings)
    ensure_topics(bootstrap, settings)
    console.print(f"Kafka at {bootstrap}; topics ready")

    run_tag = time.strftime("%Y%m%d%H%M%S")
    messages = _messages(folder, run_tag)
    producer = Producer(settings.kafka.client_config() | {"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value, headers in messages:
        producer.produce(settings.topics.reports, key=key, value=value, headers=headers)
    producer.flush(30)
    console.print(f"published {len(messages)} messages to {settings.topics.reports} "
                  f"({len(messages) - 1} reports in 3 formats + 1 unreadable)")

    started = time.perf_counter()
    processor = StreamProcessor(settings, bootstrap, instance_id=f"demo-{os.getpid()}")
    processor.keep_summary = True
    processor.run(idle_exit_s=args.idle_exit)
    elapsed = time.perf_counter() - started
    mine = [p for p in processor.summary if (p.report_id or "").endswith(run_tag) or p.dead_letter_stage]

    table = Table(title="per-report summary (this run)")
    for column in ("report", "format", "category", "published", "for review", "dead letter"):
        table.add_column(column, justify="right" if column in ("published", "for review") else "left")
    for p in sorted(mine, key=lambda p: p.report_id or "~"):
        stem, fmt = (p.report_id.split("-")[:2] if p.report_id else ("(unreadable)", "?"))
        table.add_row(stem, fmt, p.category or "", str(p.published), str(p.for_review), p.dead_letter_stage or "")
    console.print(table)
    reports = [p for p in mine if not p.dead_letter_stage]
    console.print(
        f"{len(reports)} reports: {sum(p.published for p in reports)} Observations published, "
        f"{sum(p.for_review for p in reports)} fields for review in "
        f"{sum(1 for p in reports if p.for_review)} review tasks, "
        f"{sum(1 for p in mine if p.dead_letter_stage)} dead letter(s); consumer ran {elapsed:.1f} s"
    )
    topics = settings.topics
    console.print("Read the outputs (read_committed):")
    for name in (topics.observations, topics.review, topics.extractions, topics.dlq):
        console.print(f"  cmrx tail {name} --from-beginning --idle-exit 3")
    console.print("Stop the local broker with: cmrx kafka stop")
    return 0
