"""Per-field teacher labelling, as the published teacher does it.

One prompt per field (and one for CATEGORY); 3 samples at temperature 0.3, top_p 0.8 that
finished normally, asking again up to 10 generations in all to collect them; the published vote
and scores. Works through any backend with a ``complete_field`` method (local, vllm).

Writes one ``NNNN.json`` per report in the dev-set format (``fields`` + ``CATEGORY``) plus
``scores`` per field, so labels below the 0.7 threshold can go to review before training.
With ``--fields`` only those fields are written: such a partial file is not a valid label file,
on purpose, so it cannot be mistaken for a full one.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from extraction import scoring, signals
from extraction.prompt import CATEGORY_KEY
from schemas.catalog import FIELD_KEYS

SAMPLES = 3
MAX_TRIES = 10
TEMPERATURE = 0.3
TOP_P = 0.8


def collect(backend, text: str, key: str, *, samples: int = SAMPLES, max_tries: int = MAX_TRIES,
            temperature: float = TEMPERATURE, top_p: float = TOP_P, seed: int = 0) -> tuple[list[Any], int, list[str]]:
    """(finished values, generations used, reasons of the unfinished) for one field."""
    finished: list[Any] = []
    rejected: list[str] = []
    tries = 0
    while len(finished) < samples and tries < max_tries:
        want = min(samples - len(finished), max_tries - tries)
        answers = backend.complete_field(text, key, n=want, temperature=temperature, top_p=top_p, seed=seed + tries)
        tries += want
        for answer in answers:
            (finished if answer.finished else rejected).append(answer.value if answer.finished else answer.reason)
    return finished[:samples], tries, rejected


def label_report(backend, text: str, keys: Sequence[str] = (*FIELD_KEYS, CATEGORY_KEY), *, threshold: float = 0.7,
                 seed: int = 0, samples: int = SAMPLES, max_tries: int = MAX_TRIES) -> dict[str, Any]:
    """Labels and scores for one de-identified, cleaned report."""
    per_key: dict[str, tuple[list[Any], int, list[str]]] = {
        key: collect(backend, text, key, samples=samples, max_tries=max_tries, seed=seed) for key in keys}
    field_keys = [k for k in keys if k != CATEGORY_KEY]
    voted = {k: scoring.vote(per_key[k][0]) for k in field_keys}
    consistency = scoring.consistency_scores({k: voted.get(k) for k in FIELD_KEYS})
    result: dict[str, Any] = {"fields": voted, "scores": {}}
    for key in field_keys:
        values, tries, rejected = per_key[key]
        scores = [scoring.stability(values), consistency[key], scoring.distribution(key, voted[key]),
                  signals.grounding(key, voted[key], text)[0]]
        confidence = scoring.combine(scores, "published") if values else 0.0
        result["scores"][key] = _score_entry(values, tries, rejected, scores, confidence, threshold)
    if CATEGORY_KEY in keys:
        labels, tries, rejected = per_key[CATEGORY_KEY]
        result[CATEGORY_KEY] = scoring.vote(labels)
        agree = _label_stability(labels)
        confidence = (agree + scoring.DEFAULT + scoring.DEFAULT) / 3 if labels else 0.0
        result["scores"][CATEGORY_KEY] = {"samples": labels, "tries": tries, "rejected": rejected,
                                          "stability": agree, "confidence": confidence,
                                          "route": scoring.route(confidence, threshold)}
    return result


def _score_entry(values, tries, rejected, scores, confidence, threshold) -> dict[str, Any]:
    entry: dict[str, Any] = {"samples": values, "tries": tries, "rejected": rejected}
    entry.update({s.name: round(s.value, 4) for s in scores})
    entry["confidence"] = round(confidence, 4)
    entry["route"] = scoring.route(confidence, threshold)
    low = [s.reason for s in scores if s.value < 1.0 and s.name in ("stability", "consistency", "grounding")]
    if low:
        entry["reasons"] = low
    return entry


def _label_stability(labels: list[Any]) -> float:
    pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1:]]
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else (1.0 if labels else 0.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="local", help="a backend with per-field completion: local or vllm")
    parser.add_argument("--data", type=Path, required=True, help="folder of NNNN.txt reports")
    parser.add_argument("--out", type=Path, required=True, help="folder for NNNN.json labels with scores")
    parser.add_argument("--limit", type=int, help="label only the first N reports")
    parser.add_argument("--fields", help="comma-separated keys (default: all 52 fields and CATEGORY)")
    parser.add_argument("--adapter", help="LoRA adapter (local: folder; vllm: served name)")


def run(args: argparse.Namespace) -> int:
    from cmrx.config import get_settings
    from cmrx.logs import get_logger
    from extraction.backends import get_backend
    from extraction.deid import Deidentifier
    from extraction.files import load_folder, read_report_text
    from extraction.normalize import clean_text

    log = get_logger("extraction.teacher")
    settings = get_settings().model_copy(deep=True)
    if args.adapter:
        settings.llm.adapter = args.adapter
    keys = tuple(k.strip() for k in args.fields.split(",")) if args.fields else (*FIELD_KEYS, CATEGORY_KEY)
    unknown = [k for k in keys if k not in FIELD_KEYS and k != CATEGORY_KEY]
    if unknown:
        raise SystemExit(f"unknown fields: {unknown}")
    backend = get_backend(args.backend, settings)
    if not hasattr(backend, "complete_field"):
        raise SystemExit(f"backend {args.backend!r} has no per-field completion (use local or vllm)")
    deid = Deidentifier(settings.extraction.deid_keywords)
    args.out.mkdir(parents=True, exist_ok=True)
    reports = load_folder(args.data)[: args.limit]
    for report in reports:
        started = time.perf_counter()
        text = clean_text(deid(read_report_text(report.path)).text)
        labels = label_report(backend, text, keys, threshold=settings.extraction.threshold, seed=settings.extraction.seed)
        labels["teacher"] = {**backend.info().model_dump(), "temperature": TEMPERATURE, "top_p": TOP_P,
                             "samples": SAMPLES, "max_tries": MAX_TRIES, "fields": list(keys)}
        (args.out / f"{report.report_id}.json").write_text(json.dumps(labels, indent=2))
        review = sum(entry["route"] == "review" for entry in labels["scores"].values())
        log.info("teacher labelled report", report_id=report.report_id, fields=len(keys), review=review,
                 seconds=round(time.perf_counter() - started, 1))
    return 0
