"""Speed of the ``rules`` backend on one core: reports per second.

Target: >= 200 reports/s on the **distinct** stream. The extractor caches the reading of a line
(tokens and items) by its text, so a report seen twice is faster the second time; a number measured
by repeating the same few reports says how fast a cache hit is, not how fast a stream of new
reports goes. So:

* ``distinct``: each report seen once: ``--synth-n`` synthetic reports (a seed no other set uses,
  every development layout) plus the 12 dev reports, de-identified and cleaned as the pipeline
  does. The line cache is cleared after the warm-up (which uses other reports), so only lines
  that really repeat across distinct reports (boilerplate) hit it.
* ``dev x20 (repeated, cache warm)``: the 12 dev reports repeated: the old number, kept for
  comparison; after the first pass every line is a cache hit.
* ``synth-sample``: ``data/synth-sample/`` repeated, when it exists (cache warm too).

    .venv/bin/python bench/bench_rules.py [--repeat 20] [--synth-n 600] [--seed 9100] [--dev DIR] [--synth DIR]

The first lines say whether the compiled (mypyc) modules ran (``make compile`` builds them) or the .py
modules (no build of the current sources, or ``CMRX_RULES_COMPILED=0``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from extraction.backends.rules import extract_rules
from extraction.normalize import clean_text

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "dev"
SYNTH = ROOT / "data" / "synth-sample"
WARM_SEED = 9101  # warm-up reports: never the ones timed


def _deid():
    try:
        from extraction.deid import deidentify
    except ImportError:  # pragma: no cover - de-identification not installed
        def deidentify(text: str) -> str:
            return text
    return deidentify


def _prepare(folder: Path) -> list[str]:
    deidentify = _deid()
    return [clean_text(deidentify(p.read_text(encoding="utf-8"))) for p in sorted(folder.glob("*.txt"))]


def _synthetic(n: int, seed: int) -> list[str]:
    from training.synth import generate
    from training.synth.layouts import DEV_LAYOUTS

    deidentify = _deid()
    return [clean_text(deidentify(r.text)) for r in generate(n, seed=seed, layouts=list(DEV_LAYOUTS))]


def clear_caches() -> None:
    """Forget every line read so far (the per-line token/item cache), if this version has one."""
    from extraction.backends.rules import document

    clear = getattr(document, "clear_line_cache", None)
    if clear is not None:
        clear()


def bench(texts: list[str], repeat: int) -> tuple[float, float]:
    """(reports/s by the wall clock, reports/s by this process's CPU time: fair on a busy machine)."""
    extract_rules(texts[0])  # warm the lexicon
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        for text in texts:
            extract_rules(text)
    n = repeat * len(texts)
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def bench_distinct(texts: list[str], warm: list[str]) -> tuple[float, float]:
    """Each text once, after a warm-up on other reports and a cleared line cache."""
    for text in warm:
        extract_rules(text)  # lexicon, regexes, typo caches: what a running consumer has
    clear_caches()
    wall, cpu = time.perf_counter(), time.process_time()
    for text in texts:
        extract_rules(text)
    n = len(texts)
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def _modules() -> str:
    """Which modules run: the compiled (mypyc) build or the .py sources."""
    import extraction.backends.rules as rules
    from extraction.backends.rules import compiled

    found = compiled.find_build()
    if getattr(rules, "COMPILED", False) and found is not None:
        made_by = (found[0] / compiled.COMPLETE).read_text(encoding="utf-8").splitlines()[1:]  # python, mypy, date
        return f"compiled ({', '.join(made_by)}; {found[0].name})"
    why = "CMRX_RULES_COMPILED=0" if os.environ.get("CMRX_RULES_COMPILED", "").strip() == "0" else \
        "no build of the current sources: make compile"
    return f"pure Python ({why})"


def _report(name: str, texts: list[str], wall: float, cpu: float) -> None:
    mean_kb = sum(len(t) for t in texts) / len(texts) / 1024
    print(f"{name}: {len(texts)} reports, mean {mean_kb:.1f} KB: {wall:.0f} reports/s "
          f"(wall clock), {cpu:.0f} reports/s (CPU time, one core)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--synth-n", type=int, default=600, help="distinct synthetic reports timed (0: none)")
    parser.add_argument("--seed", type=int, default=9100, help="seed of the distinct synthetic reports")
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--synth", type=Path, default=SYNTH)
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"rules modules: {_modules()}")
    dev = _prepare(args.dev) if args.dev.is_dir() and any(args.dev.glob("*.txt")) else []
    if not dev:
        print(f"dev: {args.dev} not found, skipped")
    distinct = (_synthetic(args.synth_n, args.seed) if args.synth_n else []) + dev
    if distinct:
        warm = _synthetic(20, WARM_SEED)
        wall, cpu = bench_distinct(distinct, warm)
        _report(f"distinct (synth seed {args.seed} x{args.synth_n} + dev, each once, line cache cleared)",
                distinct, wall, cpu)
    if dev:
        wall, cpu = bench(dev, args.repeat)
        _report(f"dev x{args.repeat} (repeated, cache warm)", dev * args.repeat, wall, cpu)
    if args.synth.is_dir() and any(args.synth.glob("*.txt")):
        texts = _prepare(args.synth)
        repeat = max(1, args.repeat // 10)
        wall, cpu = bench(texts, repeat)
        _report(f"synth-sample x{repeat} (repeated, cache warm)", texts * repeat, wall, cpu)
    else:
        print(f"synth-sample: {args.synth} not found, skipped")


if __name__ == "__main__":
    main()
