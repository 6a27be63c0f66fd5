"""``cmrx extract``: run the pipeline on report files and print each extraction as JSON.

A file that cannot be read (empty, binary, not UTF-8) prints a clear error naming the file;
the others are still extracted and the exit code says how many failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, help="report text files")
    parser.add_argument("--backend", default=None, help="backend name; default from settings")
    parser.add_argument("--adapter", help="LoRA adapter for the local/vllm backends")
    parser.add_argument("--full", action="store_true", help="print the full extraction record (scores, evidence)")


def summarize(record) -> dict:
    return {
        "report_id": record.report_id,
        "category": {"value": record.category.value, "confidence": round(record.category.confidence, 3)},
        "fields": {
            f.key: {"value": f.value, "unit": f.unit, "confidence": round(f.confidence, 3), "route": f.route}
            for f in record.fields
            if f.value is not None or f.route == "review"
        },
        "for_review": [f.key for f in record.fields if f.route == "review"],
        "backend": record.model.model_dump(exclude_none=True),
        "seconds": round(record.seconds, 4),
    }


def run(args: argparse.Namespace) -> int:
    from cmrx.config import get_settings
    from extraction.files import ReportFileError, read_report_text
    from extraction.pipeline import Extractor

    settings = get_settings().model_copy(deep=True)
    if args.adapter:
        settings.llm.adapter = args.adapter
    extractor = Extractor(args.backend, settings)
    failed = 0
    for path in args.files:
        try:
            text = read_report_text(path)
        except (ReportFileError, OSError) as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        record = extractor.extract_text(text, report_id=path.stem)
        out = record.model_dump(mode="json") if args.full else summarize(record)
        print(json.dumps(out, indent=2))
    return 1 if failed else 0
