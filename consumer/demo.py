"""``cmrx demo``: the main job on the embedded default.

Runs the dev reports through the default backend and prints the evaluation table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of sample reports")
    parser.add_argument("--backend", default=None, help="backend name; default from settings")


def run(args: argparse.Namespace) -> int:
    from cmrx.config import get_settings
    from extraction.evaluate import evaluate, print_table

    settings = get_settings()
    print_table(evaluate(args.backend or settings.extraction.backend, args.data, settings))
    return 0
