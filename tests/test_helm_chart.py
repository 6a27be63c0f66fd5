"""The Helm chart in deploy/helm: `deploy/helm/validate.sh` (helm lint, helm template with the default
and the production values, kubeconform -strict against Kubernetes and CRD schemas), then checks on
the rendered production manifests that a schema cannot express.

helm and kubeconform are built from the Go module proxy on first use (several minutes on 2 cores)
and cached in ${CMRX_TOOLS_DIR:-~/.cache/cmrx-tools}; the test is skipped only when no Go toolchain
can be found and the binaries are not cached yet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HELM_DIR = REPO / "deploy" / "helm"
CHART = HELM_DIR / "cmrx"
VALIDATE = HELM_DIR / "validate.sh"
PROD_VALUES = HELM_DIR / "values-production.yaml"
pytestmark = pytest.mark.timeout(2400)  # a first run compiles helm and kubeconform
GO_CANDIDATES = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")


def _tools_cached() -> bool:
    tools = Path(os.environ.get("CMRX_TOOLS_DIR") or Path.home() / ".cache" / "cmrx-tools")
    return any(tools.glob("helm-*/bin/helm")) and any(tools.glob("kubeconform-*/bin/kubeconform"))


def _go_available() -> bool:
    return bool(os.environ.get("GO") or shutil.which("go") or any(Path(p).exists() for p in GO_CANDIDATES))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _go_available() and not _tools_cached():
        pytest.skip("no Go toolchain (go not on PATH nor in /usr/local/go/bin): cannot build helm and kubeconform")
    out = tmp_path_factory.mktemp("helm")
    env = dict(os.environ, CMRX_HELM_OUT=str(out), PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(VALIDATE)], cwd=REPO, env=env, capture_output=True, text=True, timeout=2400)
    (out / "validate.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"validate.sh failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    summaries = [line for line in proc.stdout.splitlines() if line.startswith("Summary:")]
    assert summaries and all("Invalid: 0, Errors: 0, Skipped: 0" in s for s in summaries), proc.stdout
    return out


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def production(rendered: Path) -> list[dict[str, Any]]:
    return _docs(rendered / "production.yaml")


@pytest.fixture(scope="module")
def prod_values() -> dict[str, Any]:
    return yaml.safe_load(PROD_VALUES.read_text())


def _one(docs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)]
    assert len(found) == 1, f"expected one {kind} {component or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def _pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in docs:
        spec = d.get("spec", {})
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{d['kind']}/{d['metadata']['name']}", spec["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield f"CronJob/{d['metadata']['name']}", spec["jobTemplate"]["spec"]["template"]["spec"]


def _helm(rendered: Path) -> str:
    tools = dict(line.split("=", 1) for line in (rendered / "tools.env").read_text().split())
    return tools["HELM"]


def _template(rendered: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_helm(rendered), "template", "cmrx", str(CHART), "--kube-version", "1.34.0", *args],
                          capture_output=True, text=True, timeout=120)


def test_validate_renders_every_component(rendered: Path, production: list[dict[str, Any]]) -> None:
    kinds = {(d["kind"], d["metadata"]["labels"].get("app.kubernetes.io/component")) for d in production}
    for expected in [("Deployment", "consumer"), ("Deployment", "vllm"), ("Deployment", "mllp"), ("Service", "vllm"),
                     ("Service", "mllp"), ("CronJob", "training"), ("ScaledObject", "consumer"),
                     ("NetworkPolicy", "consumer"), ("NetworkPolicy", "vllm"), ("PodDisruptionBudget", "consumer"),
                     ("PersistentVolumeClaim", "registry")]:
        assert expected in kinds, expected
    assert any(d["kind"] == "ServiceMonitor" for d in production)
    assert any(d["kind"] == "ConfigMap" for d in production)
    default_kinds = {d["kind"] for d in _docs(rendered / "default.yaml")}
    assert {"Deployment", "ConfigMap", "NetworkPolicy"} <= default_kinds
    assert not default_kinds & {"ScaledObject", "ServiceMonitor", "CronJob"}


def test_consumer_egress_only_kafka_vllm_and_dns(production: list[dict[str, Any]], prod_values: dict[str, Any]) -> None:
    policy = _one(production, "NetworkPolicy", "consumer")
    assert "Egress" in policy["spec"]["policyTypes"]
    kafka_ports = set(prod_values["networkPolicy"]["kafka"]["ports"])
    vllm_labels = _one(production, "Deployment", "vllm")["spec"]["selector"]["matchLabels"]
    seen = set()
    for rule in policy["spec"]["egress"]:
        ports = {(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports", [])}
        assert ports, f"egress rule without ports allows everything: {rule}"
        peers = rule.get("to", [])
        if ports <= {("UDP", 53), ("TCP", 53)}:
            assert peers, "DNS egress must name the DNS pods"
            seen.add("dns")
        elif {p for _, p in ports} <= kafka_ports and all(proto == "TCP" for proto, _ in ports):
            assert peers == prod_values["networkPolicy"]["kafka"]["to"]
            seen.add("kafka")
        elif ports == {("TCP", 8000)}:
            assert peers == [{"podSelector": {"matchLabels": vllm_labels}}], peers
            seen.add("vllm")
        else:
            pytest.fail(f"unexpected consumer egress rule: {rule}")
    assert seen == {"dns", "kafka", "vllm"}


def test_vllm_has_no_egress(production: list[dict[str, Any]]) -> None:
    policy = _one(production, "NetworkPolicy", "vllm")
    assert "Egress" in policy["spec"]["policyTypes"]
    assert policy["spec"].get("egress", []) == []


def test_every_container_non_root_with_read_only_root(production: list[dict[str, Any]]) -> None:
    count = 0
    for name, pod in _pod_specs(production):
        pod_ctx = pod.get("securityContext", {})
        for container in pod.get("initContainers", []) + pod["containers"]:
            ctx = container.get("securityContext", {})
            where = f"{name} container {container['name']}"
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 0)) != 0, where
            assert "resources" in container and container["resources"].get("limits"), f"{where}: no limits"
            count += 1
        mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"
    assert count >= 5


def test_vllm_gpu_lora_prefix_caching_and_health_probes(production: list[dict[str, Any]], prod_values: dict[str, Any]) -> None:
    pod = _one(production, "Deployment", "vllm")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith("vllm/vllm-openai:")
    assert int(container["resources"]["requests"]["nvidia.com/gpu"]) >= 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == container["resources"]["requests"]["nvidia.com/gpu"]
    args = container["args"]
    assert "--enable-prefix-caching" in args and "--enable-lora" in args
    modules = args[args.index("--lora-modules") + 1:]
    for module in prod_values["vllm"]["lora"]["modules"]:
        assert f"{module['name']}={module['path']}" in modules
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/health", probe
    assert pod["tolerations"] and pod["nodeSelector"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["readOnly"] is True


def test_keda_never_scales_beyond_partitions(production: list[dict[str, Any]], prod_values: dict[str, Any]) -> None:
    scaled = _one(production, "ScaledObject", "consumer")
    partitions = prod_values["topics"]["partitions"]
    settings = yaml.safe_load(_one(production, "ConfigMap")["data"]["cmrx.yaml"])
    assert settings["topics"]["partitions"] == partitions
    assert scaled["spec"]["maxReplicaCount"] <= partitions
    (trigger,) = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["allowIdleConsumers"] == "false"
    assert meta["excludePersistentLag"] == "true"
    assert meta["limitToPartitionsWithLag"] == "true"
    assert meta["topic"] == settings["topics"]["reports"] and meta["consumerGroup"] == settings["kafka"]["group_id"]
    assert meta["sasl"] == "scram_sha512" and meta["tls"] == "enable"
    assert "replicas" not in _one(production, "Deployment", "consumer")["spec"], "KEDA owns the replica count"


def test_render_refuses_more_consumers_than_partitions(rendered: Path) -> None:
    too_many = _template(rendered, "-f", str(PROD_VALUES), "--set", "consumer.autoscaling.maxReplicaCount=13")
    assert too_many.returncode != 0 and "exceeds topics.partitions" in too_many.stderr
    static = _template(rendered, "--set", "topics.partitions=2", "--set", "consumer.replicas=3")
    assert static.returncode != 0 and "exceeds topics.partitions" in static.stderr
    idle = _template(rendered, "-f", str(PROD_VALUES), "--set", "consumer.autoscaling.allowIdleConsumers=true")
    assert idle.returncode != 0  # values.schema.json pins it to false


def test_secrets_only_by_reference(production: list[dict[str, Any]], prod_values: dict[str, Any]) -> None:
    assert not [d for d in production if d["kind"] == "Secret"]
    settings = _one(production, "ConfigMap")["data"]["cmrx.yaml"]
    assert "sasl_username" not in settings and "sasl_password" not in settings and "api_key" not in settings
    env = {e["name"]: e for e in _one(production, "Deployment", "consumer")["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("CMRX_KAFKA__SASL_USERNAME", "CMRX_KAFKA__SASL_PASSWORD", "CMRX_LLM__VLLM_API_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"], name
        assert "value" not in env[name]
    assert env["CMRX_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == prod_values["kafka"]["sasl"]["existingSecret"]


def test_names_fit_kubernetes_limits(rendered: Path) -> None:
    """Every render (default, production, ci/ variants with a long release name): names are DNS
    labels of at most 63 characters, CronJobs at most 52 (the controller appends a timestamp)."""
    renders = sorted(rendered.glob("*.yaml"))
    assert len(renders) >= 3, renders
    for path in renders:
        for doc in _docs(path):
            name = doc["metadata"]["name"]
            limit = 52 if doc["kind"] == "CronJob" else 63
            assert len(name) <= limit and not name.endswith("-") and "--" not in name, f"{path.name}: {doc['kind']} {name}"


def test_training_cronjob_runs_corpus_then_train_on_gpu(production: list[dict[str, Any]]) -> None:
    cron = _one(production, "CronJob", "training")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert [c["command"] for c in pod["initContainers"]] == [["cmrx", "corpus"]]
    (train,) = pod["containers"]
    assert train["command"] == ["cmrx", "train"]
    assert int(train["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    registry = next(v for v in pod["volumes"] if v["name"] == "registry")
    assert registry["persistentVolumeClaim"]["claimName"]


def test_values_are_documented_and_typed() -> None:
    """Every value in values.yaml has a comment above it and a described entry in values.schema.json
    (grouping keys such as `kafka.sasl:` are exempt from the comment; their values are not)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()

    def has_comment(line_no: int) -> bool:
        previous = next((lines[j] for j in range(line_no - 1, -1, -1) if lines[j].strip()), "")
        return previous.strip().startswith("#")

    def walk(node: yaml.Node, schema_node: dict[str, Any], path: list[str]) -> Iterator[str]:
        assert isinstance(node, yaml.MappingNode)
        for key_node, value_node in node.value:
            key = key_node.value
            where = "values." + ".".join(path + [key])
            child = schema_node.get("properties", {}).get(key)
            if child is None:
                yield f"{where} is not in values.schema.json"
                continue
            if not child.get("description"):
                yield f"{where} has no description in values.schema.json"
            grouping = isinstance(value_node, yaml.MappingNode) and "properties" in child and child.get("additionalProperties") is False
            if grouping:
                yield from walk(value_node, child, path + [key])
            elif not has_comment(key_node.start_mark.line):
                yield f"{where} (values.yaml line {key_node.start_mark.line + 1}) has no comment"

    problems = list(walk(yaml.compose(text), schema, []))
    assert not problems, "\n".join(problems)
