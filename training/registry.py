"""Versioned adapter registry and the evaluation gate that decides what the consumers run.

Layout (default ``settings.runtime.state_dir/registry``, or ``--registry``)::

    <root>/<name>/v0001/            adapter_model.safetensors, adapter_config.json,
                                    model_card.json, MODEL_CARD.md, eval_*.json
    <root>/<name>/registry.json     every version with its status and metrics; which one is current

The gate: evaluate the candidate with ``cmrx eval``'s ``evaluate`` on the corpus's validation split
(and the dev set when given), then promote it only if it is not worse than the current model on
validation (``--gate-metric``, default variable-level accuracy, minus ``--gate-tolerance``). The
current model is scored on the same validation reports: re-evaluated when its recorded score came
from another corpus. A promotion is announced as a ``ModelEvent`` on the models topic, which a
running consumer applies without restart (``consumer.model_updates``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cmrx.config import Settings
from cmrx.logs import get_logger
from schemas.messages import ModelEvent

log = get_logger("cmrx.registry")

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
HIGHER_IS_BETTER = {"variable_accuracy", "report_accuracy", "category_accuracy", "auroc"}


def default_root(settings: Settings) -> Path:
    return Path(settings.runtime.state_dir) / "registry"


class Registry:
    """One adapter family (``name``): numbered versions, one of them current."""

    def __init__(self, root: Path, name: str) -> None:
        self.folder = Path(root) / name
        self.name = name
        self.index_path = self.folder / "registry.json"

    def _index(self) -> dict[str, Any]:
        if self.index_path.exists():
            return json.loads(self.index_path.read_text())
        return {"name": self.name, "current": None, "versions": []}

    def _save(self, index: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=2) + "\n")
        tmp.replace(self.index_path)

    def versions(self) -> list[dict[str, Any]]:
        return self._index()["versions"]

    def current(self) -> dict[str, Any] | None:
        index = self._index()
        return next((v for v in index["versions"] if v["version"] == index["current"]), None)

    def path(self, version: str) -> Path:
        return self.folder / version

    def register(self, adapter: Path, card: dict[str, Any]) -> dict[str, Any]:
        """Copy the adapter files and the card into the next version folder (status 'candidate')."""
        index = self._index()
        version = f"v{len(index['versions']) + 1:04d}"
        target = self.path(version)
        target.mkdir(parents=True, exist_ok=False)
        for name in ADAPTER_FILES:
            shutil.copy2(Path(adapter) / name, target / name)
        card = {**card, "name": self.name, "version": version}
        write_card(card, target)
        entry = {"version": version, "status": "candidate", "path": str(target), "metrics": card.get("metrics", {}),
                 "corpus_sha256": card.get("corpus_sha256"), "registered_at": _now()}
        index["versions"].append(entry)
        self._save(index)
        log.info("registry.registered", name=self.name, version=version)
        return entry

    def set_status(self, version: str, status: str, **extra: Any) -> None:
        index = self._index()
        for entry in index["versions"]:
            if entry["version"] == version:
                entry.update(status=status, **extra)
        if status == "promoted":
            for entry in index["versions"]:
                if entry["version"] == index["current"] and entry["version"] != version:
                    entry["status"] = "retired"
            index["current"] = version
        self._save(index)

    def record_metrics(self, version: str, key: str, metrics: dict[str, Any]) -> None:
        """Keep a score of a version on some data (e.g. the current model on a new validation split)."""
        index = self._index()
        for entry in index["versions"]:
            if entry["version"] == version:
                entry.setdefault("scores", {})[key] = metrics
        self._save(index)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---- model card -------------------------------------------------------------------------------


def write_card(card: dict[str, Any], folder: Path) -> None:
    """model_card.json (for machines) and MODEL_CARD.md (for people)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    lines = [f"# {card.get('name', 'cmrx student adapter')} {card.get('version', '')}".rstrip(), "",
             "LoRA adapter of the cmrx student: 52 CMR measurements + CATEGORY as one JSON per report.", "",
             f"- base model: `{card.get('base_model')}`" + (f" (GGUF `{card['gguf_file']}`)" if card.get("gguf_file") else ""),
             f"- corpus manifest hash: `{card.get('corpus_sha256')}`",
             f"- corpus: {card.get('corpus_counts', {}).get('train', '?')} train / "
             f"{card.get('corpus_counts', {}).get('validation', '?')} validation examples",
             f"- trained: {card.get('date')}, {card.get('training', {}).get('steps', '?')} steps on "
             f"{card.get('training', {}).get('device', '?')} ({card.get('training', {}).get('dtype', '?')}), "
             f"{card.get('training', {}).get('seconds_per_step', '?')} s/step",
             "", "## Hyperparameters", ""]
    lines += [f"- {k}: {v}" for k, v in card.get("hyperparameters", {}).items()]
    lines += ["", "## Metrics", "", "| data | variable acc. | report acc. | category acc. | invalid | reports |",
              "|---|---|---|---|---|---|"]
    for data, m in card.get("metrics_detail", {}).items():
        lines.append(f"| {data} | {_pct(m.get('variable_accuracy'))} | {_pct(m.get('report_accuracy'))} | "
                     f"{_pct(m.get('category_accuracy'))} | {m.get('invalid', '?')} | {m.get('n_reports', '?')} |")
    if card.get("gate"):
        lines += ["", "## Gate", "", f"```json\n{json.dumps(card['gate'], indent=2, default=str)}\n```"]
    lines += ["", "Use: `cmrx eval --backend local --adapter <this folder> --data DIR`.", ""]
    (folder / "MODEL_CARD.md").write_text("\n".join(lines))


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.2f}%"


# ---- evaluation -------------------------------------------------------------------------------


def eval_summary(result) -> dict[str, Any]:
    """The numbers of an ``EvalResult`` the gate and the card keep."""
    return {"variable_accuracy": result.variable_accuracy, "report_accuracy": result.report_accuracy,
            "category_accuracy": result.category_accuracy, "n_reports": result.n_reports,
            "invalid": result.errors.get("invalid", 0), "review_rate": result.review_rate,
            "auroc": result.auroc, "seconds_per_report": result.seconds_per_report, "errors": result.errors}


def evaluate_adapter(adapter: str | None, data: Path, settings: Settings, backend: str = "local",
                     limit: int | None = None, out: Path | None = None) -> dict[str, Any]:
    """``cmrx eval`` of one adapter on a labelled folder (the first ``limit`` reports, by name)."""
    from extraction.evaluate import evaluate

    s = settings.model_copy(deep=True)
    s.llm.adapter = adapter
    with tempfile.TemporaryDirectory(prefix="cmrx-eval-") as tmp:
        folder = Path(data)
        if limit is not None:
            folder = Path(tmp)
            for txt in sorted(Path(data).glob("*.txt"))[:limit]:
                for path in (txt, txt.with_suffix(".json")):
                    if path.exists():
                        (folder / path.name).symlink_to(path.resolve())
        result = evaluate(backend, folder, s, progress=False)
    if out:
        out.write_text(result.model_dump_json(indent=2))
    summary = eval_summary(result)
    log.info("registry.evaluated", data=Path(data).name, adapter=adapter and Path(adapter).name,
             variable_accuracy=round(result.variable_accuracy, 4), reports=result.n_reports)
    return summary


def not_worse(candidate: dict[str, Any], current: dict[str, Any] | None, metric: str, tolerance: float) -> bool:
    if current is None or current.get(metric) is None:
        return True
    if candidate.get(metric) is None:
        return False
    if metric in HIGHER_IS_BETTER:
        return candidate[metric] >= current[metric] - tolerance
    return candidate[metric] <= current[metric] + tolerance


# ---- events -----------------------------------------------------------------------------------


def publish_event(event: ModelEvent, settings: Settings, bootstrap: str) -> None:
    """Write the model-updated event to the models topic (idempotent producer, flushed)."""
    from confluent_kafka import Producer

    errors: list[Any] = []
    producer = Producer(settings.kafka.client_config() | {"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                                         "acks": "all"})
    producer.produce(settings.topics.models, key=event.adapter_name, value=event.model_dump_json().encode(),
                     headers=[("content-type", b"application/json"), ("cmrx-schema", b"model-event")],
                     on_delivery=lambda err, _msg: errors.append(err) if err else None)
    if producer.flush(30) or errors:
        raise RuntimeError(f"model event not delivered: {errors or 'flush timed out'}")
    log.info("registry.event_published", topic=settings.topics.models, adapter=event.adapter_name, version=event.version)


# ---- the gate ---------------------------------------------------------------------------------


def gate(*, adapter: Path, corpus: Path, settings: Settings, registry: Registry, training: dict[str, Any],
         hyperparameters: dict[str, Any], base_model: str, gguf_file: str | None = None,
         dev: Path | None = None, metric: str = "variable_accuracy", tolerance: float = 0.0,
         val_limit: int | None = None, dev_limit: int | None = None, publish: bool = True,
         bootstrap: str | None = None, backend: str = "local", event_backend: str = "local") -> dict[str, Any]:
    """Evaluate, card, register, maybe promote, maybe announce. Returns what happened."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    corpus_hash = manifest["corpus_sha256"]
    val_dir = corpus / "validation_reports"
    eval_dir = Path(tempfile.mkdtemp(prefix="cmrx-gate-"))
    metrics_detail: dict[str, dict[str, Any]] = {}
    has_val = any(val_dir.glob("*.txt"))
    if has_val:
        metrics_detail["validation"] = evaluate_adapter(str(adapter), val_dir, settings, backend, val_limit,
                                                        eval_dir / "eval_validation.json")
    if dev is not None:
        metrics_detail["dev"] = evaluate_adapter(str(adapter), dev, settings, backend, dev_limit, eval_dir / "eval_dev.json")
    scope = f"{corpus_hash}:{val_limit}"
    current = registry.current()
    current_score = None
    if current and has_val:
        current_score = (current.get("scores") or {}).get(scope)
        if current_score is None:
            current_score = evaluate_adapter(current["path"], val_dir, settings, backend, val_limit)
            registry.record_metrics(current["version"], scope, current_score)
    candidate_score = metrics_detail.get("validation")
    promote = candidate_score is not None and not_worse(candidate_score, current_score, metric, tolerance) \
        or (not has_val and current is None)
    decision = {"metric": metric, "tolerance": tolerance, "candidate": candidate_score and candidate_score.get(metric),
                "current": current_score and current_score.get(metric),
                "current_version": current and current["version"], "promoted": bool(promote)}
    card = {
        "base_model": base_model, "gguf_file": gguf_file, "corpus_sha256": corpus_hash,
        "corpus_counts": {k: v for k, v in manifest["counts"].items() if k in ("train", "validation")},
        "prompt_prefix_sha256": manifest.get("prompt_prefix_sha256"), "hyperparameters": hyperparameters,
        "training": training, "metrics": {f"{data}_{k}": v for data, m in metrics_detail.items()
                                          for k, v in m.items() if isinstance(v, (int, float))},
        "metrics_detail": metrics_detail, "gate": decision, "date": _now(),
    }
    entry = registry.register(adapter, card)
    for report in eval_dir.glob("*.json"):
        shutil.copy2(report, registry.path(entry["version"]) / report.name)
    shutil.rmtree(eval_dir, ignore_errors=True)
    result: dict[str, Any] = {"version": entry["version"], "path": entry["path"], **decision}
    if current_score is not None and entry.get("version"):
        registry.record_metrics(entry["version"], scope, candidate_score)
    if not promote:
        registry.set_status(entry["version"], "rejected")
        log.warning("registry.rejected", version=entry["version"], **{k: v for k, v in decision.items() if k != "promoted"})
        return result
    registry.set_status(entry["version"], "promoted", promoted_at=_now())
    log.info("registry.promoted", version=entry["version"], metric=metric, value=decision["candidate"])
    if publish:
        from cmrx.kafka_local import ensure_broker

        event = ModelEvent(backend=event_backend, base_model=base_model, adapter_name=f"{registry.name}-{entry['version']}",
                           adapter_path=str(Path(entry["path"]).resolve()), version=entry["version"],
                           metrics={k: float(v) for k, v in card["metrics"].items() if isinstance(v, (int, float))})
        publish_event(event, settings, bootstrap or ensure_broker(settings))
        result["event"] = event.model_dump(mode="json")
    return result


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("evaluation gate and registry")
    group.add_argument("--no-gate", action="store_true", help="stop after saving the adapter")
    group.add_argument("--registry", type=Path, help="registry root (default: settings.runtime.state_dir/registry)")
    group.add_argument("--name", default="cmrx-student", help="adapter family name in the registry")
    group.add_argument("--dev", type=Path, help="also evaluate on this labelled folder (e.g. ../shared/data/dev)")
    group.add_argument("--gate-metric", default="variable_accuracy",
                       help="validation metric that must not get worse (variable_accuracy, report_accuracy, "
                            "category_accuracy, auroc, review_rate, ...)")
    group.add_argument("--gate-tolerance", type=float, default=0.0, help="allowed drop of the gate metric")
    group.add_argument("--val-limit", type=int, help="evaluate only the first N validation reports (CPU budgets)")
    group.add_argument("--dev-limit", type=int, help="evaluate only the first N dev reports")
    group.add_argument("--eval-backend", default="local", help="backend that runs the candidate (local)")
    group.add_argument("--event-backend", default="local", help="backend named in the model event (local or vllm)")
    group.add_argument("--no-publish", action="store_true", help="do not publish the model-updated event")
    group.add_argument("--bootstrap", help="bootstrap servers for the event (default: settings, else the local broker)")


def gate_from_args(args: argparse.Namespace, config, summary: dict[str, Any], settings: Settings) -> dict[str, Any]:
    root = args.registry or default_root(settings)
    return gate(
        adapter=Path(summary["adapter"]), corpus=config.corpus, settings=settings, registry=Registry(root, args.name),
        training={k: summary[k] for k in ("steps", "total_steps", "epochs_seen", "seconds_per_step", "device", "dtype")},
        hyperparameters=config.hyperparameters(), base_model=summary["base_model"], gguf_file=summary.get("gguf_file"),
        dev=args.dev, metric=args.gate_metric, tolerance=args.gate_tolerance, val_limit=args.val_limit,
        dev_limit=args.dev_limit, publish=not args.no_publish, bootstrap=args.bootstrap, backend=args.eval_backend,
        event_backend=args.event_backend,
    )
