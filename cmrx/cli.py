"""The ``cmrx`` command. Each subcommand lives in the module that owns its concern and exposes
``add_arguments(parser)`` and ``run(args) -> int``; this file only lists them."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Modules import heavy libraries (torch, Kafka) inside run().
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("consumer.demo", "the main job on the embedded default: local Kafka, sample reports in, summary out"),
    "run": ("consumer.app", "consume reports from Kafka, extract, publish Observations / review tasks / dead letters"),
    "extract": ("extraction.extract_cli", "extract report files and print values, confidences and routes as JSON"),
    "eval": ("extraction.evaluate", "evaluate a backend on a folder of NNNN.txt + NNNN.json reports"),
    "synth": ("training.synth", "generate varied synthetic reports with truth in the dev-set format"),
    "teacher": ("extraction.teacher", "per-field teacher labelling of a folder of reports"),
    "kafka": ("cmrx.kafka_local", "start|stop|status the local single-node KRaft broker"),
    "produce": ("producer.publish", "publish report files or folders (txt, .hl7, FHIR JSON) to the input topic"),
    "tail": ("producer.tail", "print a topic's committed messages as JSON lines"),
    "mllp": ("producer.mllp", "MLLP listener that publishes HL7 v2 messages to Kafka and ACKs after the write"),
    "corpus": ("training.corpus", "build the training corpus from extraction records and review decisions"),
    "train": ("training.trainer", "LoRA fine-tune the student on the corpus"),
    "review": ("training.reviewer", "terminal reviewer for low-confidence fields"),
    "schemas": ("schemas.export", "write or check the JSON Schema files of the wire messages"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """All commands are listed; only the selected one is imported (fast, and one broken
    optional module cannot take the whole CLI down)."""
    parser = argparse.ArgumentParser(
        prog="cmrx", description="cmrx: structured, coded, confidence-scored data from cardiac MRI reports on Kafka."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if name != selected:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from cmrx.config import get_settings
    from cmrx.logs import configure_logging

    configure_logging(get_settings().runtime.log_level)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
