"""``cmrx corpus``: turn what the pipeline saw and what reviewers decided into training examples.

Sources, all joined by report id:

- extraction records (``cmr.extractions``) and review decisions (``cmr.reviewed``), read from Kafka
  (read_committed, up to the end of each partition as it was when we started) or from JSONL files
  (plain records, or the lines ``cmrx tail`` prints);
- teacher-mode output (extraction records in JSONL, same shape);
- synthetic or hand-labelled folders in the dev-set format (NNNN.txt + NNNN.json), whose text goes
  through the same de-identification and clean-up as the pipeline's.

Labels we trust: a value that was published (confidence >= threshold), or that a reviewer confirmed
or corrected. A record with a low-confidence field nobody resolved (no decision yet, or 'skip') is
left out rather than teaching the student an unverified guess.

Output: ``train.jsonl`` and ``validation.jsonl`` (1 in 5 report ids, by hash, so a report never
changes side), ``validation_reports/`` (the validation split in the dev-set format, for
``cmrx eval``) and ``manifest.json`` (counts, content hashes). A record whose text still holds a
de-identification keyword line or a PHI pattern is refused, never written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cmrx.config import Settings, get_settings
from cmrx.logs import get_logger
from extraction import deid
from extraction.prompt import PREFIX, build_prompt, build_target
from schemas.catalog import CATEGORIES, FIELD_KEYS
from schemas.messages import ExtractionRecord, ReviewDecision

log = get_logger("cmrx.corpus")

VALIDATION_EVERY = 5
# The de-identifier's scrub patterns: anything it would have replaced is PHI here. (Names are
# left to the de-identifier: a pattern for them alone has too many false alarms.)
PHI_PATTERNS: dict[str, re.Pattern[str]] = {
    "date": deid.DATE_RE,
    "phone": deid.PHONE_RE,
    "long_id": deid.LONG_ID_RE,
    "accession": deid.ACCESSION_RE,
    "alnum_id": deid.ALNUM_ID_RE,
    "address": deid.ADDRESS_RE,
    "zip": deid.ZIP_RE,
    "hl7_name": deid.CARET_NAME_RE,
}
_PLACEHOLDER_RE = re.compile(r"\[(?:NAME|DATE|ID|PHONE|ADDRESS|ZIP)\]")
_MARKUP_RE = re.compile(r"[_*~`^|]")


# ---- examples ---------------------------------------------------------------------------------


@dataclass
class Example:
    report_id: str
    source: str  # reviewed | extraction | teacher | synthetic
    text: str  # de-identified, cleaned report text
    values: dict[str, float | None]
    category: str

    @property
    def prompt(self) -> str:
        return build_prompt(self.text)

    @property
    def target(self) -> str:
        return build_target(self.values, self.category)

    @property
    def split(self) -> str:
        return split_of(self.report_id)

    def to_json(self) -> dict[str, Any]:
        return {"report_id": self.report_id, "source": self.source, "split": self.split, "text": self.text,
                "prompt": self.prompt, "target": self.target, "values": self.values, "category": self.category}


def split_of(report_id: str, every: int = VALIDATION_EVERY) -> str:
    """'validation' for 1 in ``every`` report ids, by a hash of the id: stable across runs and
    corpus versions, so a report used for validation is never trained on later."""
    digest = hashlib.sha256(report_id.encode("utf-8")).digest()
    return "validation" if int.from_bytes(digest[:8], "big") % every == 0 else "train"


def phi_findings(text: str, keywords: Iterable[str]) -> list[str]:
    """Kinds of PHI still in ``text`` (empty = clean): a de-identification keyword line, or a
    match of one of the de-identifier's own scrub patterns (``PHI_PATTERNS``).

    Checked on a probe copy where the placeholders a first pass wrote become '[X]' ('[NAME]' holds
    a keyword) and markdown marks become spaces ('_Signed: J. Doe, July 21, 2021_' hides the date
    from the patterns' word boundaries).
    """
    probe = _MARKUP_RE.sub(" ", _PLACEHOLDER_RE.sub("[X]", text))
    keyword_re = deid.Deidentifier(keywords).keyword_re
    found = ["keyword_line"] if any(keyword_re.search(line) for line in probe.split("\n")) else []
    return found + [name for name, pattern in PHI_PATTERNS.items() if pattern.search(probe)]


def prepare_text(raw: str, settings: Settings) -> str:
    """What the pipeline's ``Extractor.prepare`` does: de-identify, then the published clean-up."""
    from extraction.normalize import clean_text

    return clean_text(deid.Deidentifier(settings.extraction.deid_keywords)(raw).text)


# ---- joining records and decisions ------------------------------------------------------------


@dataclass
class JoinStats:
    counts: Counter = field(default_factory=Counter)


def join(records: Iterable[ExtractionRecord], decisions: Iterable[ReviewDecision], source: str,
         stats: Counter) -> Iterator[Example]:
    """One example per report id: the latest record, with every decision for it applied in order.

    'correct' replaces the model value, 'confirm' keeps it, 'skip' leaves the field unresolved.
    """
    latest: dict[str, ExtractionRecord] = {}
    for record in records:
        seen = latest.get(record.report_id)
        if seen is None or record.extracted_at >= seen.extracted_at:
            latest[record.report_id] = record
    by_report: dict[str, list[ReviewDecision]] = {}
    for decision in decisions:
        by_report.setdefault(decision.report_id, []).append(decision)
    for report_id in sorted(latest):
        record = latest[report_id]
        applied = sorted(by_report.get(report_id, []), key=lambda d: d.decided_at)
        values = record.values()
        resolved = {f.key for f in record.fields if f.route == "publish"}
        category = record.category.value
        category_ok = record.category.route == "publish"
        for decision in applied:
            category_ok = True  # the task showed the category; no change means confirmed
            if decision.category:
                category = decision.category
            for d in decision.decisions:
                if d.key not in values:
                    continue
                if d.action == "correct":
                    values[d.key] = d.value
                    resolved.add(d.key)
                elif d.action == "confirm":
                    resolved.add(d.key)
                else:
                    resolved.discard(d.key)
        unresolved = set(FIELD_KEYS) - resolved
        if unresolved or not category_ok:
            stats["unresolved"] += 1
            log.info("corpus.skip_unresolved", report_id=report_id, fields=len(unresolved),
                     category_unresolved=not category_ok)
            continue
        if category not in CATEGORIES:
            stats["no_category"] += 1
            continue
        yield Example(report_id, "reviewed" if applied else source, record.deidentified_text, values, category)


def from_folder(folder: Path, settings: Settings, stats: Counter, source: str = "synthetic") -> Iterator[Example]:
    """Dev-set format folder: truth from NNNN.json, text de-identified like the pipeline's."""
    from extraction.files import load_folder, read_report_text

    for report in load_folder(folder):
        if report.truth is None or report.truth.CATEGORY is None:
            stats["no_truth"] += 1
            continue
        text = prepare_text(read_report_text(report.path), settings)
        yield Example(report.report_id, source, text, {k: report.truth.fields[k] for k in FIELD_KEYS},
                      report.truth.CATEGORY)


# ---- reading ----------------------------------------------------------------------------------


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """JSON lines; a ``cmrx tail`` line (message metadata with the record under 'value') is unwrapped."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                data = json.loads(line)
                yield data["value"] if isinstance(data.get("value"), dict) and "topic" in data else data


def read_topic(bootstrap: str, topic: str, settings: Settings, timeout_s: float = 120.0) -> list[bytes]:
    """Every committed message of ``topic`` up to the end offsets it had when we started.

    Assigned partitions and no group commits: reading a corpus moves no consumer group.
    """
    import time
    import uuid

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(settings.kafka.client_config() | {
        "bootstrap.servers": bootstrap, "group.id": f"cmrx-corpus-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "isolation.level": "read_committed", "auto.offset.reset": "earliest",
    })
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends: dict[int, int] = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30, cached=False)
            if high > low:
                ends[p] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=1.0):
                if msg.error() is None and msg.value() is not None:
                    values.append(msg.value())
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            # transaction markers take offsets too: being at or past the end offset is the end
            if all(tp.offset >= ends[tp.partition] for tp in positions):
                break
        else:
            log.warning("corpus.read_timeout", topic=topic, read=len(values))
        return values
    finally:
        consumer.close()


# ---- writing ----------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _safe_name(report_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", report_id)[:120] or "report"


def write_corpus(examples: Iterable[Example], out: Path, settings: Settings, stats: Counter,
                 sources: dict[str, Any]) -> dict[str, Any]:
    """Deduplicate, refuse PHI, split and write; returns the manifest (also written)."""
    out.mkdir(parents=True, exist_ok=True)
    reports_dir = out / "validation_reports"
    reports_dir.mkdir(exist_ok=True)
    for stale in reports_dir.glob("*"):
        stale.unlink()
    seen_ids: set[str] = set()
    seen_content: set[str] = set()
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    for example in examples:
        if example.report_id in seen_ids:
            stats["duplicate_report_id"] += 1
            continue
        content = hashlib.sha256((example.text + "\x00" + example.target).encode()).hexdigest()
        if content in seen_content:
            stats["duplicate_content"] += 1
            continue
        findings = phi_findings(example.text, settings.extraction.deid_keywords)
        if findings:
            stats["refused_phi"] += 1
            log.warning("corpus.refused_phi", report_id=example.report_id, source=example.source, kinds=findings)
            continue
        seen_ids.add(example.report_id)
        seen_content.add(content)
        row = example.to_json()
        rows[row["split"]].append(row)
        if row["split"] == "validation":
            name = _safe_name(example.report_id)
            (reports_dir / f"{name}.txt").write_text(example.text + "\n", encoding="utf-8")
            truth = {"fields": example.values, "CATEGORY": example.category, "report_id": example.report_id}
            (reports_dir / f"{name}.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    files: dict[str, str] = {}
    for split, split_rows in rows.items():
        split_rows.sort(key=lambda r: r["report_id"])
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=True) + "\n" for r in split_rows), encoding="utf-8")
        files[path.name] = _sha256(path)
    corpus_hash = hashlib.sha256("".join(f"{k}:{v}\n" for k, v in sorted(files.items())).encode()).hexdigest()
    by_source = Counter(r["source"] for split_rows in rows.values() for r in split_rows)
    manifest = {
        "corpus_sha256": corpus_hash,
        "files": files,
        "prompt_prefix_sha256": hashlib.sha256(PREFIX.encode()).hexdigest(),
        "counts": {"train": len(rows["train"]), "validation": len(rows["validation"]),
                   "by_source": dict(sorted(by_source.items())), **dict(sorted(stats.items()))},
        "validation_every": VALIDATION_EVERY,
        "sources": sources,
        "created_at": datetime.now(timezone.utc).isoformat(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def build(out: Path, settings: Settings, *, kafka: bool = False, bootstrap: str | None = None,
          extractions: list[Path] = (), decisions: list[Path] = (), teacher: list[Path] = (),
          folders: list[Path] = ()) -> dict[str, Any]:
    """Collect every source, join, and write the corpus. Earlier sources win a report id:
    reviewed pipeline records, then teacher records, then labelled folders."""
    stats: Counter = Counter()
    records: list[ExtractionRecord] = []
    reviewed: list[ReviewDecision] = []
    sources: dict[str, Any] = {}
    if kafka:
        from cmrx.kafka_local import ensure_broker

        bootstrap = bootstrap or ensure_broker(settings)
        records += [ExtractionRecord.model_validate_json(v) for v in read_topic(bootstrap, settings.topics.extractions, settings)]
        reviewed += [ReviewDecision.model_validate_json(v) for v in read_topic(bootstrap, settings.topics.reviewed, settings)]
        sources["kafka"] = {"extractions": settings.topics.extractions, "reviewed": settings.topics.reviewed,
                            "records": len(records), "decisions": len(reviewed)}
    for path in extractions:
        records += [ExtractionRecord.model_validate(d) for d in read_jsonl(path)]
    for path in decisions:
        reviewed += [ReviewDecision.model_validate(d) for d in read_jsonl(path)]
    if extractions or decisions:
        sources["files"] = {"extractions": [p.name for p in extractions], "decisions": [p.name for p in decisions]}
    teacher_records = [ExtractionRecord.model_validate(d) for path in teacher for d in read_jsonl(path)]
    if teacher:
        sources["teacher"] = {"files": [p.name for p in teacher], "records": len(teacher_records)}
    if folders:
        sources["folders"] = [p.name for p in folders]

    def everything() -> Iterator[Example]:
        yield from join(records, reviewed, "extraction", stats)
        yield from join(teacher_records, reviewed, "teacher", stats)
        for folder in folders:
            yield from from_folder(folder, settings, stats)

    manifest = write_corpus(everything(), out, settings, stats, sources)
    log.info("corpus.written", out=str(out), corpus=manifest["corpus_sha256"][:12], **{
        k: v for k, v in manifest["counts"].items() if isinstance(v, int)})
    return manifest


# ---- CLI --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="corpus folder to write")
    parser.add_argument("--kafka", action="store_true",
                        help="read extraction records and review decisions from the extractions and reviewed topics")
    parser.add_argument("--bootstrap", help="bootstrap servers (default: settings, else the local broker)")
    parser.add_argument("--extractions", type=Path, action="append", default=[], metavar="JSONL",
                        help="extraction records (JSONL or `cmrx tail` output); repeatable")
    parser.add_argument("--decisions", type=Path, action="append", default=[], metavar="JSONL",
                        help="review decisions (JSONL or `cmrx tail` output); repeatable")
    parser.add_argument("--teacher", type=Path, action="append", default=[], metavar="JSONL",
                        help="teacher-mode extraction records (JSONL); repeatable")
    parser.add_argument("--synthetic", type=Path, action="append", default=[], metavar="DIR",
                        help="dev-set format folder (NNNN.txt + NNNN.json truth), e.g. `cmrx synth` output; repeatable")


def run(args: argparse.Namespace) -> int:
    if not (args.kafka or args.extractions or args.teacher or args.synthetic):
        print("nothing to read: give --kafka, --extractions, --teacher or --synthetic")
        return 2
    settings = get_settings()
    manifest = build(args.out, settings, kafka=args.kafka, bootstrap=args.bootstrap, extractions=args.extractions,
                     decisions=args.decisions, teacher=args.teacher, folders=args.synthetic)
    print(json.dumps({"out": str(args.out), "corpus_sha256": manifest["corpus_sha256"], **manifest["counts"]}, indent=2))
    return 0
