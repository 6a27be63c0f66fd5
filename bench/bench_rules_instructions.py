"""Instructions per report of the rules backend, compiled and pure Python: a count load cannot move.

Wall-clock rates on this VM swing by 25-40% between runs of the same code, so a change to the rules
backend is judged by instructions: valgrind's callgrind counts every instruction of a child run
that reads ``--reports`` distinct reports and of one that reads a single report (both prepare the
same texts); the difference over ``reports - 1`` is the cost of a report, import, text generation
and lexicon building excluded.

    python bench/bench_rules_instructions.py [--reports 162]

Needs ``valgrind`` (Debian package); each child runs about 50x slower under it (a minute or two).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_DIR = REPO.parent / "shared" / "data" / "dev"
SEED = 9100  # the synthetic reports bench_rules.py reads

_CHILD = r"""
import sys
from pathlib import Path
import extraction.backends.rules as rules
from extraction.backends.rules import extract_rules
from extraction.normalize import clean_text
from training.synth import generate

n, total, dev, seed = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
texts = [clean_text(p.read_text(encoding="utf-8")) for p in sorted(dev.glob("*.txt"))]
texts += [clean_text(r.text) for r in generate(max(0, total - len(texts)), seed=seed)]  # same work in both runs
extract_rules("LVEF 55 %")  # lexicon and regexes built before the counted reports
for text in texts[:n]:
    extract_rules(text + " ")  # a new string: no per-line cache hit from an earlier run
print("compiled" if rules.COMPILED else "pure", file=sys.stderr)
"""


def count(reports: int, total: int, compiled: bool) -> tuple[str, int]:
    """(which modules ran, instructions) of one child run that prepares ``total`` reports and reads
    the first ``reports`` (the preparation is the same in both runs, so it cancels out)."""
    env = dict(os.environ, CMRX_RULES_COMPILED="1" if compiled else "0", PYTHONPATH=str(REPO))
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c",
                          _CHILD, str(reports), str(total), str(DEV_DIR), str(SEED)],
                         env=env, cwd=REPO, capture_output=True, text=True, check=True)
    collected = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    if collected is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    which = "compiled" if "\ncompiled\n" in f"\n{out.stderr}\n" else "pure"
    return which, int(collected.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=162, help="12 dev reports + synthetic ones (seed 9100)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)")
        return 1
    for compiled in (True, False):
        which, one = count(1, args.reports, compiled)
        _, many = count(args.reports, args.reports, compiled)
        per_report = (many - one) / (args.reports - 1)
        print(f"{which:8s} {per_report / 1e6:6.2f} M instructions a report "
              f"({args.reports} reports {many:,}, 1 report {one:,})", flush=True)
        if compiled and which != "compiled":
            print("  (no compiled build of the current sources: make compile)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
