#!/usr/bin/env bash
# Issue 14, item 5: fine-tuning length against accuracy and minutes, for the baseline (`none`), head
# truncation. It runs on the positive-control base and recipe (grid.sh), so that the grid's `none`
# runs at 256 tokens (3 seeds) are the middle point: IMDB 1000 train / 1000 dev / 5000 test,
# fine-tuning lr 3e-4 with layer decay 0.95, 6 epochs, the best dev epoch kept.
#     bash experiments/length.sh                       # VALUES="128 512" SEEDS="1"
# (the control base is the affordable encoder on 2 CPU cores: 3.4x less compute per token than
#  all-MiniLM-L6-v2; on a GPU, the same with -S model.name=<your encoder> and its own recipe)
set -euo pipefail
ROOT=$(pwd)
HERE=$ROOT/experiments/positive_control
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
[ -f "$HERE/model/model.safetensors" ] || { echo "no base model: run 'dvc repro' in $HERE first" >&2; exit 2; }
grid=(); for seed in 1 2 3; do grid+=("control-none-seed$seed"); done   # grid.sh's runs at 256 tokens
COMMON_ARGS="-S task.dataset=$SHARED/data/imdb -S task.demo.train=1000 -S task.demo.dev=1000 -S task.demo.test=5000
  -S model.name=$HERE/model -S collect.corpora_dir=$HERE/.grid/corpora -S pretrain.max_tokens=2000000
  -S pretrain.lr=5e-4 -S pretrain.eval_max_tokens=50000 -S finetune.lr=3e-4 -S finetune.epochs=6
  -S finetune.patience=0 -S finetune.truncation=head" \
PREFIX=length STRATEGIES=none SEEDS=${SEEDS:-1} BY=model.max_length VALUES=${VALUES:-"128 512"} \
CORPORA_OUT=$HERE/.grid/corpora OUT=${OUT:-$ROOT/experiments/.length} SHARED=$SHARED EXTRA_EXPS="${grid[*]}" \
  bash "$ROOT/experiments/grid.sh"
