#!/usr/bin/env bash
# Fill the ignored folder that bench/gpu_check.sh reads on a GPU machine without network:
# cp312 wheels of what its image lacks, the SmolLM2 GGUF split in parts (the transfer limit is
# 64 MiB a call, so the parts travel in separate calls), a corpus and a labelled folder.
#   bench/gpu_prepare.sh CORPUS_DIR DEV_DIR        (run from the repo root, .venv installed)
# The device copy honours .gitignore, not .git/info/exclude: a carried path survives to the next
# call on a warm machine only under a .gitignore'd folder. So the first part goes to
# .cache/gpu/part.00 (call 1 carries only it); call 2 carries .gpu/model/part.01, .gpu/whl,
# .gpu/corpus.tgz, .gpu/dev (and .gpu/src, a `git archive` of the code, if the working tree is
# being edited) and runs `bench/gpu_check.sh`, which joins the parts from both places.
set -euo pipefail
G=${GPU_DIR:-.gpu}
CORPUS=$1 DEV=$2
grep -qx "/$G/" .git/info/exclude 2>/dev/null || echo "/$G/" >> .git/info/exclude
mkdir -p "$G/whl" "$G/model"
# transformers >= 5.24 (forced decoder's cache API) and peft as pinned here; the rest are cmrx's
# light dependencies. torch, numpy, tokenizers, safetensors, accelerate, hub, yaml: in the image.
for spec in transformers==5.24.0 peft==0.21.2 gguf==0.19.0 pydantic==2.14.4 pydantic-core==2.50.5 \
    pydantic-settings==2.16.3 python-dotenv typing-inspection annotated-types typing-extensions \
    structlog==26.1.0 orjson==3.13.0 regex; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$G/whl" "$spec"
done
GGUF=$(.venv/bin/python -c "from extraction.backends.local import default_model_location as d; f, n = d(); print(f / n)")
rm -f "$G"/model/part.* && split -b 58M -d "$GGUF" "$G/model/part."
mkdir -p .cache/gpu && mv "$G/model/part.00" .cache/gpu/part.00
rm -rf "$G/dev" && mkdir -p "$G/dev" && cp "$DEV"/*.txt "$DEV"/*.json "$G/dev/"
tar czf "$G/corpus.tgz" -C "$(dirname "$CORPUS")" "$(basename "$CORPUS")"
du -sh "$G"/*
