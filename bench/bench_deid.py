"""De-identification on synthetic reports of every layout: planted PHI that survives, and CPU ms
per report. Run it at an older commit to compare.

    .venv/bin/python bench/bench_deid.py [--n 400] [--seed 777]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extraction.deid import Deidentifier  # noqa: E402
from training.synth import LAYOUTS, generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=777)
    args = parser.parse_args()
    reports = generate(args.n, seed=args.seed, layouts=list(LAYOUTS))
    deidentify = Deidentifier()
    for report in reports[:20]:  # warm caches
        deidentify(report.text)
    started = time.process_time()
    outputs = [deidentify(report.text).text for report in reports]
    ms = (time.process_time() - started) / len(reports) * 1000
    planted = sum(len(r.phi) for r in reports)
    leaked = Counter(r.style for r, text in zip(reports, outputs) for phi in r.phi if phi in text)
    print(f"{len(reports)} reports, {len(LAYOUTS)} layouts, seed {args.seed}: planted PHI strings left "
          f"{sum(leaked.values())}/{planted}; {ms:.2f} ms CPU per report")
    for style, count in leaked.most_common():
        print(f"  {style}: {count}")


if __name__ == "__main__":
    main()
