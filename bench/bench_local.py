"""Seconds per report and peak memory of the local backend, before and after the speed work.

before = ``decoder="generate"``: ``model.generate`` with an xgrammar JSON-schema logits processor
         (greedy, and 3 samples via num_return_sequences);
after  = ``decoder="forced"``: cached prefix KV, batched samples, forced tokens in one pass.

Each decoder runs in its own process so each peak RSS is its own. The machine is shared: run it
when it is quiet, and repeat.

    .venv/bin/python bench/bench_local.py --reports 2              # both decoders, 1 thread
    .venv/bin/python bench/bench_local.py --decoder forced --reports 12 --threads 2
    .venv/bin/python bench/bench_local.py --decoder forced --reports 2 --threads 2 --modes sampled --int8

cpu_s_per_report is process CPU time (all threads); forward passes and tokens fed do not depend on
the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "dev"


def measure(decoder: str, data: Path, reports: int, modes: list[str], threads: int, adapter: str | None = None,
            int8: bool | None = None) -> dict:
    """Load once, then time each mode on each report; peak RSS of this process at the end."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from cmrx.config import get_settings
    from extraction.backends.local import LocalBackend
    from extraction.deid import deidentify
    from extraction.normalize import clean_text

    started = time.perf_counter()
    settings = get_settings().model_copy(deep=True)
    settings.llm.adapter = adapter
    backend = LocalBackend(settings, decoder=decoder, threads=threads, int8=int8)
    load_s = time.perf_counter() - started
    texts = [clean_text(deidentify(p.read_text())) for p in sorted(data.glob("*.txt"))[:reports]]
    result: dict = {"decoder": decoder, "reports": len(texts), "threads": threads, "adapter": adapter,
                    "int8": backend.decodes_int8, "load_s": round(load_s, 1),
                    "load_avg_before": os.getloadavg()[0]}
    for mode in modes:
        n = 1 if mode == "greedy" else 3
        seconds, valid, invalid = [], 0, 0
        passes, fed = backend.decoder.forward_passes, backend.decoder.tokens_fed
        cpu0 = time.process_time()
        for text in texts:
            t0 = time.perf_counter()
            out = backend.extract(text, n_samples=n)
            seconds.append(time.perf_counter() - t0)
            valid += len(out.samples)
            invalid += len(out.invalid)
        result[mode] = {"s_per_report": round(sum(seconds) / len(seconds), 2), "each_s": [round(s, 1) for s in seconds],
                        "cpu_s_per_report": round((time.process_time() - cpu0) / len(texts), 2),
                        "valid": valid, "invalid": invalid}
        if decoder == "forced":  # deterministic, unlike seconds on a shared machine
            result[mode]["forward_passes_per_report"] = (backend.decoder.forward_passes - passes) / len(texts)
            result[mode]["tokens_fed_per_report"] = (backend.decoder.tokens_fed - fed) / len(texts)
    result["load_avg_after"] = os.getloadavg()[0]  # the machine is shared: seconds mean little when this is > cores
    result["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoder", choices=["generate", "forced", "both"], default="both")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--reports", type=int, default=2)
    parser.add_argument("--modes", default="greedy,sampled", help="greedy (1 sample), sampled (3 samples)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (same for both decoders)")
    parser.add_argument("--adapter", help="LoRA adapter folder (default: the bare base model)")
    parser.add_argument("--int8", dest="int8", action="store_true", default=None,
                        help="forced decoder on an int8 copy, adapter merged (default: settings.llm.int8, off)")
    parser.add_argument("--json", action="store_true", help="print one JSON line (used for the child processes)")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if args.decoder != "both":
        result = measure(args.decoder, args.data, args.reports, modes, args.threads, args.adapter, args.int8)
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return 0
    rows = []
    for decoder in ("generate", "forced"):
        cmd = [sys.executable, __file__, "--decoder", decoder, "--data", str(args.data), "--reports", str(args.reports),
               "--modes", args.modes, "--threads", str(args.threads), "--json"] + (
                   ["--adapter", args.adapter] if args.adapter else []) + (["--int8"] if args.int8 else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{'':22}{'load s':>8}" + "".join(f"{m + ' s/report':>20}" for m in modes) + f"{'peak RSS GB':>14}")
    for label, row in zip(("before (generate)", "after (forced)"), rows):
        cells = "".join(f"{row[m]['s_per_report']:>20.1f}" for m in modes)
        print(f"{label:22}{row['load_s']:>8.1f}{cells}{row['peak_rss_gb']:>14.2f}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
