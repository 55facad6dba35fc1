#!/usr/bin/env bash
# Wheels for bench/gpu_check.sh on a GPU machine whose Python 3.12 already has torch (CUDA) and nothing else of
# this project (no network there): run this where the package registry is reachable, carry the folder along
# (git-ignored), then `bash bench/gpu_check.sh .gpu/whl`. The list is what ran the benches and stages on an H200
# (../shared/NOTES-LIBRARIES.md) plus what pipeline/ imports; --no-deps, so a dependency that machine lacks is
# named by the check's import error, not guessed here.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.gpu/whl}
mkdir -p "$DEST"
pip download -q --no-deps --python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any -d "$DEST" \
  transformers==5.25.0 huggingface_hub==2.4.0 "datasets==5.2.0" dill==0.4.1 multiprocess==0.70.19 \
  httpx2 httpcore2 truststore h11 click typer shellingham tomlkit regex annotated-doc rich \
  pydantic==2.14.4 pydantic_core==2.50.5 typing-inspection annotated-types \
  "datasketch>=2.0" "datatrove==0.10.1" loguru orjson humanize xxhash tqdm \
  scikit-learn scipy threadpoolctl joblib  # drop what the machine already has: the carry limit is 64 MiB
du -sh "$DEST"
