#!/usr/bin/env bash
# Thin wrapper: ./scripts/kafka.sh start|stop|status|topics  (same as `cmrx kafka ...`).
# Runs from the repo root so the default state dir (.cmrx) is the checkout's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" -m cmrx.cli kafka "$@"
