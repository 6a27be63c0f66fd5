#!/usr/bin/env python3
"""Builds the JSON schemas kubeconform validates the rendered chart against, offline after one
download from PyPI (kubeconform's default schema host is not reachable from CI).

* Kubernetes built-in kinds come from the ``kubernetes-validate`` wheel, which ships the Kubernetes
  OpenAPI as JSON Schema per Kubernetes minor (``v<version>-local-strict``: additionalProperties
  false). Those files reference a shared ``/api/_definitions.json``; kubeconform needs standalone
  files, so each kind is written with the closure of the definitions it uses embedded as ``$defs``,
  in kubeconform's layout: ``<root>/v<version>-standalone-strict/<kind>-<group>-<version>.json``.
* CRDs (KEDA ScaledObject/TriggerAuthentication, Prometheus Operator ServiceMonitor) come from the
  ``cloudcoil-models-*`` wheels: pydantic models generated from those CRDs. Their JSON Schema is
  made strict (additionalProperties false wherever properties are listed) and written as
  ``<crds>/<group>/<kind>_<version>.json``.

The wheels are pinned by hash in requirements-schemas.txt and are unpacked, never installed. The
result is cached under ``--cache`` keyed by that file's hash; the script prints the cache folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements-schemas.txt"
DEFINITIONS_REF = "/api/_definitions.json#"

# (module, class, API group, version) of the CRD kinds the chart renders.
CRD_KINDS = [
    ("cloudcoil.models.keda.v1alpha1", "ScaledObject", "keda.sh", "v1alpha1"),
    ("cloudcoil.models.keda.v1alpha1", "TriggerAuthentication", "keda.sh", "v1alpha1"),
    ("cloudcoil.models.prometheus_operator.v1", "ServiceMonitor", "monitoring.coreos.com", "v1"),
]


def log(message: str) -> None:
    print(f"schemas: {message}", file=sys.stderr, flush=True)


def download_wheels(cache: Path, key: str) -> Path:
    wheels = cache / f"wheels-{key}"
    if (wheels / ".complete").exists():
        return wheels
    tmp = cache / f"wheels-{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"downloading the schema wheels listed in {REQUIREMENTS.name}")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--only-binary=:all:", "--require-hashes", "-r", str(REQUIREMENTS), "-d", str(tmp)],
        check=True,
    )
    (tmp / ".complete").touch()
    shutil.rmtree(wheels, ignore_errors=True)
    tmp.rename(wheels)
    return wheels


def wheel(wheels: Path, project: str) -> Path:
    prefix = project.replace("-", "_") + "-"
    found = sorted(p for p in wheels.glob("*.whl") if p.name.startswith(prefix))
    if not found:
        raise SystemExit(f"schemas: no wheel for {project} in {wheels}")
    return found[-1]


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(DEFINITIONS_REF):
                value = "#" + value[len(DEFINITIONS_REF):]
            out[key] = _rewrite_refs(value)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            found.add(ref[len("#/$defs/"):])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _closure(schema: dict, definitions: dict) -> dict:
    needed: set[str] = set()
    todo: set[str] = set()
    _refs(schema, todo)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        if name not in definitions:
            raise SystemExit(f"schemas: dangling reference {name}")
        needed.add(name)
        more: set[str] = set()
        _refs(definitions[name], more)
        todo |= more - needed
    return {name: definitions[name] for name in sorted(needed)}


def build_k8s(wheels: Path, root: Path, versions: list[str]) -> None:
    source = wheel(wheels, "kubernetes-validate")
    with zipfile.ZipFile(source) as zf:
        names = zf.namelist()
        available = sorted({n.split("/")[2] for n in names if n.startswith("kubernetes_validate/kubernetes-json-schema/v")})
        for version in versions:
            dest = root / f"v{version}-standalone-strict"
            if (dest / ".complete").exists():
                continue
            prefix = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
            files = [n for n in names if n.startswith(prefix) and n.endswith(".json")]
            if not files:
                raise SystemExit(f"schemas: {source.name} has no v{version}-local-strict; it has: {', '.join(available)}")
            definitions = _rewrite_refs(json.loads(zf.read(prefix + "_definitions.json"))["$defs"])
            tmp = root / f"v{version}-standalone-strict.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            count = 0
            for name in files:
                base = name[len(prefix):]
                if base.startswith("_"):
                    continue
                schema = _rewrite_refs(json.loads(zf.read(name)))
                schema.pop("$id", None)
                schema["$defs"] = _closure(schema, definitions)
                (tmp / base).write_text(json.dumps(schema, separators=(",", ":")))
                count += 1
            (tmp / ".complete").touch()
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
            log(f"Kubernetes v{version}: {count} standalone strict schemas")


def _strict(node: Any) -> Any:
    """additionalProperties false on every object schema that lists its properties."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if isinstance(out.get("properties"), dict) and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def build_crds(wheels: Path, root: Path) -> None:
    if (root / ".complete").exists():
        return
    site = root.parent / "crd-site"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    for project in ("cloudcoil", "cloudcoil-models-keda", "cloudcoil-models-prometheus-operator"):
        with zipfile.ZipFile(wheel(wheels, project)) as zf:
            zf.extractall(site)
    tmp = root.parent / "crds.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sys.path.insert(0, str(site))
    try:
        import importlib

        for module_name, class_name, group, version in CRD_KINDS:
            model = getattr(importlib.import_module(module_name), class_name)
            schema = _strict(model.model_json_schema(by_alias=True))
            schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
            schema["properties"]["apiVersion"] = {"type": "string", "enum": [f"{group}/{version}"]}
            schema["properties"]["kind"] = {"type": "string", "enum": [class_name]}
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
            out = tmp / group / f"{class_name.lower()}_{version}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(schema, separators=(",", ":")))
    except ModuleNotFoundError as exc:
        raise SystemExit(f"schemas: the CRD models need {exc.name} in {sys.executable} (pydantic>=2 is a cmrx dependency)")
    finally:
        sys.path.remove(str(site))
    (tmp / ".complete").touch()
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    shutil.rmtree(site, ignore_errors=True)
    log(f"CRDs: {', '.join(k[1] for k in CRD_KINDS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="cache folder (created)")
    parser.add_argument("--k8s-version", action="append", required=True, help="e.g. 1.34.0; repeatable")
    args = parser.parse_args(argv)
    wheels_key = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + Path(__file__).read_bytes()).hexdigest()[:12]
    cache = args.cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    wheels = download_wheels(cache, wheels_key)
    out = cache / f"schemas-{key}"
    build_k8s(wheels, out / "k8s", args.k8s_version)
    build_crds(wheels, out / "crds")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
