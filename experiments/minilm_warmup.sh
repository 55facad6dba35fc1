#!/usr/bin/env bash
# The MiniLM strategy grid of docs/results.md again, with the MLM head warmed up first (all-MiniLM-L6-v2
# ships without one: pretrain.head_warmup_tokens, default 200,000, encoder frozen, not counted
# in the budget) and 10x the budget: 2,000,000 MLM tokens per strategy. Everything else is the
# old grid's recipe (demo 1000/1000/1000, max_length 128, Sun et al.'s fine-tuning defaults of the
# time: 3 epochs, no early stopping, pinned here since the defaults became 6 epochs, patience 2).
#     MODEL_DIR=$(../shared/scripts/offline-model.sh) bash experiments/minilm_warmup.sh
set -euo pipefail
ROOT=$(pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
MODEL_DIR=${MODEL_DIR:-$("$SHARED/scripts/offline-model.sh")}
WORK=$ROOT/experiments/.minilm_warmup      # git-ignored: absolute-path corpora, compare outputs
COMMON_ARGS="-S task.dataset=$SHARED/data/imdb -S model.name=$MODEL_DIR -S model.max_length=128
  -S collect.corpora_dir=$WORK/corpora -S pretrain.max_tokens=${MAX_TOKENS:-2000000}
  -S pretrain.eval_max_tokens=50000 -S pretrain.head_warmup_tokens=200000
  -S finetune.lr=2e-5 -S finetune.epochs=3 -S finetune.patience=0" \
PREFIX=${PREFIX:-warmup2m} CORPORA_OUT=$WORK/corpora OUT=${OUT:-$WORK/reports} SHARED=$SHARED \
  bash "$ROOT/experiments/grid.sh"
