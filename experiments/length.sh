#!/usr/bin/env bash
# Issue 14, item 5: fine-tuning length against accuracy and minutes, for the baseline (`none`:
# all-MiniLM-L6-v2 fine-tuned as shipped) on the embedded IMDB demo, head truncation, today's recipe.
#     bash experiments/length.sh                       # VALUES="128 256 512" SEEDS="1"
set -euo pipefail
ROOT=$(pwd)
COMMON_ARGS="-S finetune.truncation=head" PREFIX=length STRATEGIES=none SEEDS=${SEEDS:-1} \
  BY=model.max_length VALUES=${VALUES:-"128 256 512"} OUT=${OUT:-$ROOT/experiments/.length} \
  bash "$ROOT/experiments/grid.sh"
