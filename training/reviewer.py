"""``cmrx review``: a terminal reviewer for the low-confidence fields, enough to close the loop.

Reads review tasks from the review topic (consumer group ``cmrx-reviewer`` by default, so each
task is answered once), shows every field below the threshold with its evidence, samples and the
reasons of its scores, takes confirm / correct / skip, and publishes a ``ReviewDecision`` to the
reviewed topic. The task's offset is committed only after the decision is delivered.

``--auto-from-truth DIR`` answers from dev-set format truth (``DIR/<report_id>.json``) instead of a
person: confirm when the model's value matches the truth, correct otherwise. It is what the proof
and the tests use.
"""

from __future__ import annotations

import argparse
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from cmrx.config import Settings, get_settings
from cmrx.logs import get_logger
from schemas.catalog import CATEGORIES
from schemas.messages import FieldDecision, ReviewDecision, ReviewItem, ReviewTask

log = get_logger("cmrx.reviewer")

Decide = Callable[[ReviewTask], ReviewDecision | None]
CONTEXT_CHARS = 60


# ---- decisions from truth ---------------------------------------------------------------------


def truth_for(report_id: str, folder: Path) -> dict | None:
    """The dev-set truth JSON of a report (file named by the report id), or None."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", report_id)
    for name in (report_id, safe):
        path = Path(folder) / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return None


def decide_from_truth(task: ReviewTask, truth: dict, reviewer: str = "auto-truth") -> ReviewDecision:
    from extraction.evaluate import matches

    fields = truth["fields"]
    decisions = []
    for item in task.items:
        expected = fields.get(item.key)
        expected = None if expected is None else float(expected)
        if matches(item.value, expected):
            decisions.append(FieldDecision(key=item.key, action="confirm"))
        else:
            decisions.append(FieldDecision(key=item.key, action="correct", value=expected))
    category = truth.get("CATEGORY")
    changed = category if category in CATEGORIES and category != task.category.value else None
    return ReviewDecision(task_id=task.task_id, report_id=task.report_id, reviewer=reviewer, decisions=decisions,
                          category=changed)


def truth_decider(folder: Path, reviewer: str = "auto-truth") -> Decide:
    def decide(task: ReviewTask) -> ReviewDecision | None:
        truth = truth_for(task.report_id, folder)
        if truth is None:
            log.warning("review.no_truth", report_id=task.report_id)
            return None
        return decide_from_truth(task, truth, reviewer)

    return decide


# ---- the terminal -----------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "null" if value is None else f"{value:g}"


def _evidence(item: ReviewItem, text: str) -> str:
    """The evidence span in its line context (bold), or the value as the report wrote it."""
    from rich.markup import escape

    if item.evidence and item.evidence.spans:
        span = item.evidence.spans[0]
        start, end = max(0, span.start - CONTEXT_CHARS), min(len(text), span.end + CONTEXT_CHARS)
        before, hit, after = text[start:span.start], text[span.start:span.end], text[span.end:end]
        return " ".join(f"...{escape(before)}[bold yellow]{escape(hit)}[/]{escape(after)}...".split())
    if item.evidence and item.evidence.original_value:
        return f"as written: {escape(item.evidence.original_value)}"
    return "[dim]no evidence span[/]"


def _parse_value(raw: str) -> float | None | str:
    """A corrected value: a number, or 'null'; anything else is returned as text (ask again)."""
    raw = raw.strip().lower()
    if raw in ("null", "none", "-", ""):
        return None
    try:
        return float(raw.replace(",", "."))
    except ValueError:
        return raw


class _Lines:
    """A text stream whose lines come without their newline, like ``input()`` gives them: rich
    reads a given stream with ``readline()``, and Enter must still mean 'the default'."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def readline(self) -> str:
        return self.stream.readline().rstrip("\r\n")


class TerminalReviewer:
    """Shows one task and asks about each field; ``stream`` is where answers come from (stdin)."""

    def __init__(self, console=None, stream: TextIO | None = None, reviewer: str = "terminal",
                 show_report: bool = False) -> None:
        from rich.console import Console

        self.console = console or Console()
        self.stream = _Lines(stream) if stream is not None else None
        self.reviewer = reviewer
        self.show_report = show_report

    def ask(self, prompt: str, choices: list[str] | None = None, default: str | None = None) -> str:
        from rich.prompt import Prompt

        kwargs = {"choices": choices} if choices else {}
        if default is not None:
            kwargs["default"] = default
        return Prompt.ask(prompt, console=self.console, stream=self.stream, **kwargs)

    def __call__(self, task: ReviewTask) -> ReviewDecision | None:
        from rich.markup import escape
        from rich.panel import Panel
        from rich.table import Table

        c = self.console
        c.rule(f"report {escape(task.report_id)}: {len(task.items)} field(s) below {task.threshold}")
        if self.show_report:
            c.print(Panel(escape(task.deidentified_text), title="de-identified report"))
        decisions: list[FieldDecision] = []
        for n, item in enumerate(task.items, 1):
            table = Table(show_header=False, box=None, pad_edge=False)
            table.add_row("field", f"[bold]{item.key}[/] ({escape(item.unit)})  {n}/{len(task.items)}")
            table.add_row("value", f"[bold]{_fmt(item.value)}[/]   confidence {item.confidence:.2f}")
            table.add_row("samples", ", ".join(_fmt(v) for v in item.samples))
            for score in item.scores:
                table.add_row(score.name, f"{score.value:.2f}  {escape(score.reason)}")
            table.add_row("evidence", _evidence(item, task.deidentified_text))
            c.print(table)
            action = self.ask("[c]onfirm, co[r]rect, [s]kip", ["c", "r", "s"], default="c")
            if action == "r":
                value = _parse_value(self.ask(f"{item.key} in {item.unit} (a number or null)"))
                while isinstance(value, str):
                    c.print(f"[red]not a number: {escape(value)}[/]")
                    value = _parse_value(self.ask(f"{item.key} in {item.unit} (a number or null)"))
                decisions.append(FieldDecision(key=item.key, action="correct", value=value))
            else:
                decisions.append(FieldDecision(key=item.key, action="confirm" if action == "c" else "skip"))
        category = None
        cat = task.category
        c.print(f"category [bold]{cat.value}[/] (confidence {cat.confidence:.2f}; samples {', '.join(map(str, cat.samples))})")
        if cat.route == "review":
            answer = self.ask("category: [c]onfirm or one of " + ", ".join(CATEGORIES), ["c", *CATEGORIES], default="c")
            category = None if answer == "c" or answer == cat.value else answer
        return ReviewDecision(task_id=task.task_id, report_id=task.report_id, reviewer=self.reviewer,
                              decisions=decisions, category=category)


# ---- the Kafka loop ---------------------------------------------------------------------------


def review_loop(settings: Settings, bootstrap: str, decide: Decide, *, group_id: str = "cmrx-reviewer",
                max_tasks: int | None = None, idle_exit_s: float | None = None) -> dict[str, int]:
    """Answer tasks until ``max_tasks`` or ``idle_exit_s`` without one; returns counts."""
    from confluent_kafka import Consumer, Producer

    base = settings.kafka.client_config() | {"bootstrap.servers": bootstrap}
    consumer = Consumer(base | {"group.id": group_id, "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                "isolation.level": "read_committed"})
    producer = Producer(base | {"enable.idempotence": True, "acks": "all"})
    consumer.subscribe([settings.topics.review])
    counts = {"tasks": 0, "published": 0, "skipped_tasks": 0, "bad_tasks": 0}
    last = time.monotonic()
    try:
        while max_tasks is None or counts["tasks"] < max_tasks:
            message = consumer.poll(0.5)
            if message is None:
                if idle_exit_s is not None and time.monotonic() - last >= idle_exit_s:
                    break
                continue
            if message.error() is not None:
                continue
            last = time.monotonic()
            counts["tasks"] += 1
            try:
                task = ReviewTask.model_validate_json(message.value())
            except ValueError as exc:
                counts["bad_tasks"] += 1
                log.warning("review.bad_task", offset=message.offset(), error=str(exc)[:200])
                consumer.commit(message=message, asynchronous=False)
                continue
            decision = decide(task)
            if decision is None:
                counts["skipped_tasks"] += 1
            else:
                errors: list = []
                producer.produce(settings.topics.reviewed, key=task.report_id, value=decision.model_dump_json().encode(),
                                 headers=[("content-type", b"application/json"), ("cmrx-schema", b"review-decision")],
                                 on_delivery=lambda err, _m: errors.append(err) if err else None)
                if producer.flush(30) or errors:
                    raise RuntimeError(f"decision for {task.report_id} not delivered: {errors}")
                counts["published"] += 1
                log.info("review.published", report_id=task.report_id, task_id=task.task_id,
                         corrected=sum(d.action == "correct" for d in decision.decisions),
                         confirmed=sum(d.action == "confirm" for d in decision.decisions))
            consumer.commit(message=message, asynchronous=False)
            last = time.monotonic()
    finally:
        consumer.close()
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--auto-from-truth", type=Path, metavar="DIR",
                        help="answer from dev-set format truth (DIR/<report_id>.json) instead of asking")
    parser.add_argument("--reviewer", default=None, help="reviewer id written into each decision (pseudonymous)")
    parser.add_argument("--group", default="cmrx-reviewer", help="consumer group (one group = each task answered once)")
    parser.add_argument("--max", type=int, help="stop after N tasks")
    parser.add_argument("--idle-exit", type=float, metavar="SECONDS", help="stop after this long without a task")
    parser.add_argument("--show-report", action="store_true", help="print the whole de-identified report per task")
    parser.add_argument("--bootstrap", help="bootstrap servers (default: settings, else the local broker)")


def run(args: argparse.Namespace) -> int:
    from cmrx.kafka_local import ensure_broker, ensure_topics

    settings = get_settings()
    bootstrap = args.bootstrap or ensure_broker(settings)
    ensure_topics(bootstrap, settings)
    if args.auto_from_truth:
        decide = truth_decider(args.auto_from_truth, args.reviewer or "auto-truth")
        idle = args.idle_exit if args.idle_exit is not None else 10.0
    else:
        decide = TerminalReviewer(reviewer=args.reviewer or f"reviewer-{uuid.uuid4().hex[:6]}",
                                  show_report=args.show_report)
        idle = args.idle_exit
    counts = review_loop(settings, bootstrap, decide, group_id=args.group, max_tasks=args.max, idle_exit_s=idle)
    print(json.dumps(counts))
    return 0
