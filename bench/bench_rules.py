"""Speed of the ``rules`` backend on one core: reports per second.

Runs the 12 dev reports (de-identified and cleaned as the pipeline does) repeated, and a
synthetic set when ``data/synth-sample/`` exists. Target: >= 200 reports/s.

    .venv/bin/python bench/bench_rules.py [--repeat 20] [--dev DIR] [--synth DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from extraction.backends.rules import extract_rules
from extraction.normalize import clean_text

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "dev"
SYNTH = ROOT / "data" / "synth-sample"


def _prepare(folder: Path) -> list[str]:
    try:
        from extraction.deid import deidentify
    except ImportError:  # pragma: no cover - de-identification not installed
        def deidentify(text: str) -> str:
            return text
    return [clean_text(deidentify(p.read_text(encoding="utf-8"))) for p in sorted(folder.glob("*.txt"))]


def bench(texts: list[str], repeat: int) -> tuple[float, float]:
    """(reports/s by the wall clock, reports/s by this process's CPU time: fair on a busy machine)."""
    extract_rules(texts[0])  # warm the lexicon
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        for text in texts:
            extract_rules(text)
    n = repeat * len(texts)
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--synth", type=Path, default=SYNTH)
    args = parser.parse_args()
    for name, folder in (("dev", args.dev), ("synth", args.synth)):
        if not folder.is_dir() or not any(folder.glob("*.txt")):
            print(f"{name}: {folder} not found, skipped")
            continue
        texts = _prepare(folder)
        repeat = args.repeat if name == "dev" else max(1, args.repeat // 10)
        wall, cpu = bench(texts, repeat)
        mean_kb = sum(len(t) for t in texts) / len(texts) / 1024
        print(f"{name}: {len(texts)} reports x {repeat}, mean {mean_kb:.1f} KB: {wall:.0f} reports/s "
              f"(wall clock), {cpu:.0f} reports/s (CPU time, one core)")


if __name__ == "__main__":
    main()
