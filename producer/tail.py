"""``cmrx tail TOPIC``: print a topic's committed messages as JSON lines.

Reads with ``isolation.level=read_committed`` (what the consumers downstream see: aborted
transactions never show), in a throw-away consumer group that commits nothing. One line per
message: topic, partition, offset, timestamp, key, headers and the value parsed as JSON when it is
JSON, else base64 (``value_b64``). Output goes to stdout only; this tool exists to look at data.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import uuid
from typing import Any, TextIO


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", help="topic to read")
    parser.add_argument("--from-beginning", action="store_true", help="start at the earliest offset (default: only new messages)")
    parser.add_argument("--idle-exit", type=float, metavar="SECONDS", help="exit after this many seconds without a message")
    parser.add_argument("--max", type=int, metavar="N", help="exit after N messages")
    parser.add_argument("--bootstrap", help="bootstrap servers (default: settings, else the local broker)")


def message_to_dict(msg: Any) -> dict[str, Any]:
    """One consumed message as a JSON-ready dict."""
    out: dict[str, Any] = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
    _, timestamp = msg.timestamp()
    if timestamp and timestamp > 0:
        out["timestamp_ms"] = timestamp
    out.update(_bytes_field("key", msg.key(), parse_json=False))
    headers = {}
    for name, value in msg.headers() or []:
        headers[name] = _text_or_b64(value)
    out["headers"] = headers
    out.update(_bytes_field("value", msg.value(), parse_json=True))
    return out


def _bytes_field(name: str, data: bytes | None, parse_json: bool) -> dict[str, Any]:
    if data is None:
        return {name: None}
    if parse_json:
        try:
            return {name: json.loads(data)}
        except ValueError:
            pass
    else:
        try:
            return {name: data.decode("utf-8")}
        except UnicodeDecodeError:
            pass
    return {f"{name}_b64": base64.b64encode(data).decode("ascii")}


def _text_or_b64(value: bytes | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode("ascii")


def tail(
    bootstrap: str,
    topic: str,
    *,
    from_beginning: bool = False,
    idle_exit_s: float | None = None,
    max_messages: int | None = None,
    out: TextIO = sys.stdout,
    config: dict[str, Any] | None = None,
) -> int:
    """Print messages until ``max_messages`` or ``idle_exit_s`` of silence; returns the count."""
    from confluent_kafka import Consumer, KafkaError

    settings_config = dict(config or {"bootstrap.servers": bootstrap})
    settings_config.update(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"cmrx-tail-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
    )
    consumer = Consumer(settings_config)
    consumer.subscribe([topic])
    count = 0
    last = time.monotonic()
    try:
        while max_messages is None or count < max_messages:
            msg = consumer.poll(0.5)
            if msg is None:
                if idle_exit_s is not None and time.monotonic() - last >= idle_exit_s:
                    break
                continue
            if msg.error():
                if msg.error().code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                print(json.dumps({"error": str(msg.error())}), file=sys.stderr)
                continue
            last = time.monotonic()
            out.write(json.dumps(message_to_dict(msg), ensure_ascii=False) + "\n")
            out.flush()
            count += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return count


def run(args: argparse.Namespace) -> int:
    from cmrx.config import get_settings
    from cmrx.kafka_local import admin_config
    from producer.publish import resolve_bootstrap

    settings = get_settings()
    bootstrap = resolve_bootstrap(settings, args.bootstrap)
    tail(
        bootstrap,
        args.topic,
        from_beginning=args.from_beginning,
        idle_exit_s=args.idle_exit,
        max_messages=args.max,
        config=admin_config(bootstrap, settings),
    )
    return 0
