"""``cmrx eval``: accuracy, error types and calibration of a backend on a labelled folder.

Matching rule and error types follow the facts file: a prediction matches when
|pred - truth| <= max(0.01, 0.005 |truth|) or both are null. Errors: omission (stated, output
null), inexact (within 10% of the truth), confusion (the value of another field of the same
report), invalid (no valid answer for the report), hallucination (a number where the truth is
null), wrong (any other number). Calibration is measured on the "scored pairs": (report, field)
pairs where the prediction or the truth is non-null (all-null pairs are trivially right).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

from schemas.catalog import FIELD_KEYS

ERROR_TYPES = ("omission", "inexact", "confusion", "invalid", "hallucination", "wrong")


def matches(pred: float | None, truth: float | None) -> bool:
    if pred is None or truth is None:
        return pred is None and truth is None
    return abs(pred - truth) <= max(0.01, 0.005 * abs(truth))


def classify_error(key: str, pred: float | None, truth: dict[str, float | None], invalid: bool) -> str | None:
    """None when right, else the error type."""
    expected = truth[key]
    if matches(pred, expected):
        return None
    if invalid:
        return "invalid"
    if pred is None:
        return "omission"
    if expected is None:
        return "hallucination"
    if any(matches(pred, v) for k, v in truth.items() if k != key and v is not None):
        return "confusion"
    if abs(pred - expected) <= 0.10 * abs(expected):
        return "inexact"
    return "wrong"


class PairResult(BaseModel):
    report_id: str
    key: str
    pred: float | None
    truth: float | None
    error: str | None
    confidence: float
    route: str


class ReliabilityBin(BaseModel):
    lo: float
    hi: float
    n: int
    accuracy: float
    mean_confidence: float


def reliability_bins(pairs: list[PairResult], bins: int = 10) -> list[ReliabilityBin]:
    scored = [p for p in pairs if p.pred is not None or p.truth is not None]
    result = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        group = [p for p in scored if lo <= p.confidence < hi or (b == bins - 1 and p.confidence == 1.0)]
        if group:
            result.append(ReliabilityBin(lo=lo, hi=hi, n=len(group),
                                         accuracy=sum(p.error is None for p in group) / len(group),
                                         mean_confidence=sum(p.confidence for p in group) / len(group)))
    return result


class EvalResult(BaseModel):
    backend: str
    n_reports: int
    n_failed_reports: int
    variable_accuracy: float
    report_accuracy: float
    category_accuracy: float
    errors: dict[str, int]
    per_field: dict[str, float]
    error_rate_below_threshold: float | None
    error_rate_above_threshold: float | None
    auroc: float | None
    ece: float | None
    review_rate: float
    seconds_per_report: float
    threshold: float
    calibration_by_combiner: dict[str, dict[str, float | None]] = {}
    reliability: list[ReliabilityBin] = []
    failures: list[str] = []
    wrong: list[PairResult] = []


def auroc(scores: list[float], positives: list[bool]) -> float | None:
    """Probability a correct value scores higher than a wrong one (ties count half)."""
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    if not pos or not neg:
        return None
    ranked = sorted(scores)
    # rank-sum with average ranks for ties
    ranks: dict[float, float] = {}
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1] == ranked[i]:
            j += 1
        ranks[ranked[i]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(ranks[s] for s in pos)
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def expected_calibration_error(confidences: list[float], correct: list[bool], bins: int = 10) -> float | None:
    if not confidences:
        return None
    total, ece = len(confidences), 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(confidences) if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if idx:
            acc = sum(correct[i] for i in idx) / len(idx)
            conf = sum(confidences[i] for i in idx) / len(idx)
            ece += len(idx) / total * abs(acc - conf)
    return ece


def calibration(pairs: list[PairResult], threshold: float) -> dict[str, float | None]:
    scored = [p for p in pairs if p.pred is not None or p.truth is not None]
    below = [p for p in scored if p.confidence < threshold]
    above = [p for p in scored if p.confidence >= threshold]

    def rate(group: list[PairResult]) -> float | None:
        return sum(p.error is not None for p in group) / len(group) if group else None

    return {
        "error_rate_below_threshold": rate(below),
        "error_rate_above_threshold": rate(above),
        "auroc": auroc([p.confidence for p in scored], [p.error is None for p in scored]),
        "ece": expected_calibration_error([p.confidence for p in scored], [p.error is None for p in scored]),
        "review_rate": len(below) / len(scored) if scored else 0.0,
    }


def evaluate(backend_name: str, data: Path, settings=None, progress: bool = True) -> EvalResult:
    from tqdm import tqdm

    from cmrx.config import get_settings
    from extraction import scoring
    from extraction.files import ReportFileError, load_folder, read_report_text
    from extraction.pipeline import Extractor

    settings = settings or get_settings()
    extractor = Extractor(backend_name, settings)
    threshold = settings.extraction.threshold
    reports = [r for r in load_folder(data) if r.truth is not None]
    pairs: list[PairResult] = []
    extended_pairs: list[PairResult] = []
    failures: list[str] = []
    reports_right = category_right = 0
    started = time.perf_counter()
    for report in tqdm(reports, desc=f"eval {backend_name}", unit="report", disable=not progress):
        truth = report.truth.fields
        try:
            record = extractor.extract_text(read_report_text(report.path), report.report_id)
        except ReportFileError as exc:
            failures.append(str(exc))
            record = None
        invalid = record is None or (record.invalid_samples > 0 and all(f.value is None for f in record.fields))
        all_right = True
        for key in FIELD_KEYS:
            pred = None if record is None else record.field(key).value
            error = classify_error(key, pred, truth, invalid)
            all_right &= error is None
            result = record.field(key) if record else None
            conf = result.confidence if result else 0.0
            pairs.append(PairResult(report_id=report.report_id, key=key, pred=pred, truth=truth[key], error=error,
                                    confidence=conf, route=result.route if result else "review"))
            if result:
                ext = scoring.combine(result.scores, "extended")
                extended_pairs.append(pairs[-1].model_copy(update={"confidence": ext}))
        reports_right += all_right
        category_right += record is not None and record.category.value == report.truth.CATEGORY
    elapsed = time.perf_counter() - started
    n = len(reports)
    per_field = {k: sum(p.error is None for p in pairs if p.key == k) / n for k in FIELD_KEYS}
    chosen = pairs if settings.extraction.combiner == "published" else extended_pairs
    cal = calibration(chosen, threshold)
    return EvalResult(
        backend=backend_name,
        n_reports=n,
        n_failed_reports=len(failures),
        variable_accuracy=sum(p.error is None for p in pairs) / len(pairs),
        report_accuracy=reports_right / n,
        category_accuracy=category_right / n,
        errors={t: c for t, c in sorted(Counter(p.error for p in pairs if p.error).items())} | {
            t: 0 for t in ERROR_TYPES if t not in {p.error for p in pairs}},
        per_field=per_field,
        seconds_per_report=elapsed / n,
        threshold=threshold,
        reliability=reliability_bins(pairs if settings.extraction.combiner == "published" else extended_pairs),
        calibration_by_combiner={"published": cal, "extended": calibration(extended_pairs, threshold)},
        failures=failures,
        wrong=[p for p in pairs if p.error],
        **cal,
    )


def print_table(result: EvalResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = Table(title=f"cmrx eval: backend {result.backend}, {result.n_reports} reports")
    summary.add_column("metric")
    summary.add_column("value", justify="right")

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f}%"

    rows = [
        ("variable-level accuracy", pct(result.variable_accuracy)),
        ("report-level accuracy", pct(result.report_accuracy)),
        ("category accuracy", pct(result.category_accuracy)),
        *((f"errors: {k}", str(v)) for k, v in result.errors.items()),
        (f"error rate, confidence < {result.threshold}", pct(result.error_rate_below_threshold)),
        (f"error rate, confidence >= {result.threshold}", pct(result.error_rate_above_threshold)),
        ("AUROC (confidence vs correct)", "n/a" if result.auroc is None else f"{result.auroc:.3f}"),
        ("ECE", "n/a" if result.ece is None else f"{result.ece:.3f}"),
        ("review rate", pct(result.review_rate)),
        ("failed report files", str(result.n_failed_reports)),
        ("seconds per report", f"{result.seconds_per_report:.4f}"),
    ]
    for row in rows:
        summary.add_row(*row)
    console.print(summary)
    worst = sorted(result.per_field.items(), key=lambda kv: kv[1])[:8]
    console.print("lowest per-field accuracy: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in worst))
    for failure in result.failures:
        console.print(f"[red]failed:[/red] {failure}")


def reliability_plot(result: EvalResult, path: Path) -> None:
    """Reliability diagram: accuracy per confidence bin against the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    xs = [(b.lo + b.hi) / 2 for b in result.reliability]
    ys = [b.accuracy for b in result.reliability]
    counts = [b.n for b in result.reliability]
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar(xs, ys, width=0.1, alpha=0.6, edgecolor="black", label="accuracy per bin")
    for x, y, c in zip(xs, ys, counts):
        ax.text(x, y + 0.01, str(c), ha="center", fontsize=7)
    ax.axvline(result.threshold, color="red", lw=1, label=f"review threshold {result.threshold}")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{result.backend}: ECE {result.ece or 0:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default=None, help="backend name (null, rules, local, vllm); default from settings")
    parser.add_argument("--data", type=Path, required=True, help="folder of NNNN.txt + NNNN.json")
    parser.add_argument("--out", type=Path, help="write the full result as JSON here")
    parser.add_argument("--plot", type=Path, help="write a reliability diagram (PNG) here")
    parser.add_argument("--adapter", help="LoRA adapter for the local/vllm backends")
    parser.add_argument("--combiner", choices=["published", "extended"], help="confidence combiner")
    parser.add_argument("--threshold", type=float, help="review threshold (default 0.7)")


def run(args: argparse.Namespace) -> int:
    from cmrx.config import get_settings

    settings = get_settings().model_copy(deep=True)
    if args.adapter:
        settings.llm.adapter = args.adapter
    if args.combiner:
        settings.extraction.combiner = args.combiner
    if args.threshold is not None:
        settings.extraction.threshold = args.threshold
    backend = args.backend or settings.extraction.backend
    result = evaluate(backend, args.data, settings)
    print_table(result)
    if args.out:
        args.out.write_text(result.model_dump_json(indent=2))
    if args.plot:
        reliability_plot(result, args.plot)
    return 0
