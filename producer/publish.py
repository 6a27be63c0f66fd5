"""``cmrx produce PATH...``: publish report files or folders (.txt, .hl7, FHIR .json) to the reports
topic, keyed by report id, with a ``content-type`` header.

Each file is decoded with the consumer's codec before it is sent, so what the consumer would
dead-letter is refused here with a clear error (``--no-check`` sends it anyway, to exercise the
dead-letter path). ``--as hl7|fhir`` wraps .txt files in that format with the shared encoders.
The producer is idempotent (acks=all) and flushed before the counts are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cmrx.config import Settings
    from consumer.codecs import Format

SUFFIX_FORMATS = {".txt": "text", ".hl7": "hl7v2", ".er7": "hl7v2", ".json": "fhir"}
FORMAT_NAMES = {"text": "text", "hl7": "hl7v2", "fhir": "fhir"}


@dataclass
class Prepared:
    """One file ready to send: wire bytes, key and format."""

    path: Path
    key: str
    value: bytes
    fmt: Format


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="report files or folders (.txt, .hl7, .json)")
    parser.add_argument("--format", choices=["auto", "text", "hl7", "fhir"], default="auto", help="format of the input files (auto: by suffix)")
    parser.add_argument("--as", dest="wrap", choices=["hl7", "fhir"], help="wrap .txt reports into HL7 v2 ORU^R01 or a FHIR DiagnosticReport")
    parser.add_argument("--hl7-variant", choices=["lines", "br", "nte"], default="lines", help="with --as hl7: OBX per line, one OBX with \\.br\\, or NTE")
    parser.add_argument("--topic", help="topic (default: settings.topics.reports)")
    parser.add_argument("--bootstrap", help="bootstrap servers (default: settings, else the local broker)")
    parser.add_argument("--no-check", action="store_true", help="send files even when the consumer's codec would reject them")


def collect_files(paths: list[Path]) -> list[Path]:
    """Files as given plus the report files of folders (sorted, not recursive)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIX_FORMATS))
        else:
            files.append(path)
    return files


def prepare(path: Path, *, fmt: str = "auto", wrap: str | None = None, hl7_variant: str = "lines", check: bool = True, settings: Settings | None = None) -> Prepared | None:
    """Read one file and turn it into a message; None for a .json that is not a FHIR resource
    (the dev set's truth files sit next to the reports). Raises DecodeError/OSError when unusable."""
    from consumer.codecs import DecodeError, decode_message, detect_format, encode

    data = path.read_bytes()
    source: Format
    if fmt != "auto":
        source = FORMAT_NAMES[fmt]  # type: ignore[assignment]
    elif path.suffix.lower() in SUFFIX_FORMATS:
        source = SUFFIX_FORMATS[path.suffix.lower()]  # type: ignore[assignment]
    else:
        source = detect_format(data.decode("utf-8", "replace"))
    if source == "fhir" and fmt == "auto" and not _looks_like_resource(data):
        return None
    key = path.stem
    if source == "text" and wrap:
        target: Format = FORMAT_NAMES[wrap]  # type: ignore[assignment]
        text = decode_message(data, fmt="text", key=key, settings=settings).text
        extra: dict[str, Any] = {"variant": hl7_variant, "control_id": key[:20]} if target == "hl7v2" else {}
        data, source = encode(text, target, key, **extra), target
    if check:
        envelope = decode_message(data, key=key, fmt=source, settings=settings)
        key = envelope.report_id
    elif not data:
        raise DecodeError("empty message", "empty")
    return Prepared(path=path, key=key, value=data, fmt=source)


def _looks_like_resource(data: bytes) -> bool:
    try:
        parsed = json.loads(data)
    except ValueError:
        return True  # let the codec report the JSON error
    return isinstance(parsed, dict) and "resourceType" in parsed


def producer_config(bootstrap: str, settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Shared client settings plus an idempotent, acks=all producer."""
    from cmrx.kafka_local import admin_config

    config = admin_config(bootstrap, settings)
    config.update({"enable.idempotence": True, "acks": "all", "linger.ms": 5})
    config.update(overrides)
    return config


def resolve_bootstrap(settings: Settings, bootstrap: str | None = None) -> str:
    """The given address, else the configured one, else the local broker (started, topics made)."""
    from cmrx.kafka_local import ensure_broker, ensure_topics

    if bootstrap:
        return bootstrap
    local = not settings.kafka.bootstrap_servers
    address = ensure_broker(settings)
    if local:
        ensure_topics(address, settings)
    return address


def publish(items: list[Prepared], topic: str, config: dict[str, Any], flush_timeout_s: float = 60.0) -> tuple[int, int]:
    """Produce all items and wait for their delivery reports: (delivered, failed)."""
    from confluent_kafka import Producer

    from cmrx.logs import get_logger
    from consumer.codecs import CONTENT_TYPES

    log = get_logger("cmrx.produce")
    counts = {"delivered": 0, "failed": 0}

    def on_delivery(err: Any, msg: Any) -> None:
        key = msg.key().decode("utf-8", "replace") if msg.key() else None
        if err is None:
            counts["delivered"] += 1
            log.debug("produce.delivered", report_id=key, partition=msg.partition(), offset=msg.offset())
        else:
            counts["failed"] += 1
            log.error("produce.failed", report_id=key, error=str(err))

    producer = Producer(config)
    for item in items:
        while True:
            try:
                producer.produce(topic, key=item.key.encode("utf-8"), value=item.value, headers=[("content-type", CONTENT_TYPES[item.fmt].encode())], on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.5)  # local queue full: let deliveries drain
        producer.poll(0)
    remaining = producer.flush(flush_timeout_s)
    counts["failed"] += remaining
    close = getattr(producer, "close", None)  # release the handle now (older clients lack close)
    if callable(close):
        close()
    return counts["delivered"], counts["failed"]


def run(args: argparse.Namespace) -> int:
    from cmrx.config import get_settings
    from cmrx.logs import get_logger
    from consumer.codecs import DecodeError

    log = get_logger("cmrx.produce")
    settings = get_settings()
    items: list[Prepared] = []
    rejected = skipped = 0
    for path in collect_files(args.paths):
        try:
            item = prepare(path, fmt=args.format, wrap=args.wrap, hl7_variant=args.hl7_variant, check=not args.no_check, settings=settings)
        except (DecodeError, OSError) as exc:
            rejected += 1
            reason = exc.reason if isinstance(exc, DecodeError) else type(exc).__name__
            print(f"error: {path}: {reason}", file=sys.stderr)
            continue
        if item is None:
            skipped += 1
            continue
        items.append(item)
    topic = args.topic or settings.topics.reports
    delivered = failed = 0
    if items:
        bootstrap = resolve_bootstrap(settings, args.bootstrap)
        delivered, failed = publish(items, topic, producer_config(bootstrap, settings))
    log.info("produce.done", topic=topic, published=delivered, failed=failed, rejected=rejected, skipped=skipped)
    print(json.dumps({"topic": topic, "published": delivered, "failed": failed, "rejected": rejected, "skipped": skipped}))
    return 0 if failed == 0 and rejected == 0 else 1
