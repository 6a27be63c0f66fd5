"""``cmrx schemas``: JSON Schema files of the wire messages and of the model's output, for
consumers written in other languages. ``--check`` fails when a committed file is out of date."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SCHEMA_DIR = Path(__file__).with_name("json")


def rendered() -> dict[str, str]:
    from schemas.messages import WIRE_MODELS
    from schemas.model_output import model_output_schema

    files = {f"{name}.schema.json": model.model_json_schema() for name, model in WIRE_MODELS.items()}
    files["model-output.schema.json"] = model_output_schema()
    return {name: json.dumps(schema, indent=2, sort_keys=False) + "\n" for name, schema in files.items()}


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    wanted = rendered()
    stale = [n for n, text in wanted.items() if not (directory / n).exists() or (directory / n).read_text() != text]
    extra = [p.name for p in directory.glob("*.json") if p.name not in wanted] if directory.exists() else []
    return sorted(stale + extra)


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        (directory / name).write_text(text)
    return sorted(rendered())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="regenerate schemas/json/*.json (default)")
    group.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")


def run(args: argparse.Namespace) -> int:
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"out of date: schemas/json/{name} (run: cmrx schemas --write)")
        return 1 if stale else 0
    for name in write():
        print(f"wrote schemas/json/{name}")
    return 0
