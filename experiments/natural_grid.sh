#!/usr/bin/env bash
# The natural MiniLM grid at full power (issue 25, part 3): IMDB, all-MiniLM-L6-v2 with its MLM head
# warmed up, `task`, `in_domain`, `cross_domain` against `none`, 5 fine-tuning seeds, 5,000 test
# reviews, MAX_TOKENS (default 2,000,000) MLM tokens per strategy. The recipe is otherwise the
# project's default (1000 train / 1000 dev, 128 tokens, lr 2e-5, at most 6 epochs, patience 2).
#     MODEL_DIR=$(../shared/scripts/offline-model.sh) bash experiments/natural_grid.sh
# `compare` then reports each difference with its interval over test reviews and seeds, and its MDE.
set -euo pipefail
ROOT=$(pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
MODEL_DIR=${MODEL_DIR:-$("$SHARED/scripts/offline-model.sh")}
WORK=$ROOT/experiments/.natural
COMMON_ARGS="-S task.dataset=$SHARED/data/imdb -S task.demo.test=5000 -S model.name=$MODEL_DIR
  -S model.max_length=128 -S collect.corpora_dir=$WORK/corpora -S pretrain.max_tokens=${MAX_TOKENS:-2000000}
  -S pretrain.eval_max_tokens=50000 -S pretrain.head_warmup_tokens=200000
  -S finetune.lr=2e-5 -S finetune.epochs=6" \
PREFIX=${PREFIX:-natural} SEEDS=${SEEDS:-"1 2 3 4 5"} CORPORA_OUT=$WORK/corpora OUT=${OUT:-$WORK/reports} \
SHARED=$SHARED bash "$ROOT/experiments/grid.sh"
