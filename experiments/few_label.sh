#!/usr/bin/env bash
# Few labels, a large unlabelled pool (issue 25, part 3): `none` against MLM on IMDB's own
# unlabelled text (corpora/local_unlabelled/in_domain.yaml: `unsup` plus the train reviews with their
# labels withheld) at LABELS (default "100 500") labelled training reviews, 5 fine-tuning seeds, the
# natural grid's 5,000 test reviews and MLM budget (Sun et al. 2019 fine-tune IMDb on 0.4% of its labels;
# Gururangan et al. 2020's RCT-500).
#     MODEL_DIR=$(../shared/scripts/offline-model.sh) bash experiments/few_label.sh
# The recorded runs used at most 6 epochs, patience 2 (the defaults here). 100 labels need more: the long
# schedule without early stopping is EPOCHS=30 PATIENCE=0 (docs/results.md: patience stops a few-label run early).
set -euo pipefail
ROOT=$(pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
MODEL_DIR=${MODEL_DIR:-$("$SHARED/scripts/offline-model.sh")}
WORK=$ROOT/experiments/.few_label
mkdir -p "$WORK/corpora"
for f in "$ROOT"/corpora/local_unlabelled/*.yaml; do
  sed "s#path: \.\./shared/#path: $SHARED/#" "$f" > "$WORK/corpora/$(basename "$f")"
done
COMMON_ARGS="-S task.dataset=$SHARED/data/imdb -S task.demo.test=5000 -S model.name=$MODEL_DIR
  -S model.max_length=128 -S collect.corpora_dir=$WORK/corpora -S pretrain.max_tokens=${MAX_TOKENS:-2000000}
  -S pretrain.eval_max_tokens=50000 -S pretrain.head_warmup_tokens=200000
  -S finetune.lr=2e-5 -S finetune.epochs=${EPOCHS:-6} -S finetune.patience=${PATIENCE:-2}" \
PREFIX=${PREFIX:-fewlabel} STRATEGIES="none in_domain" SEEDS=${SEEDS:-"1 2 3 4 5"} BY=task.demo.train \
VALUES=${LABELS:-"100 500"} OUT=${OUT:-$WORK/reports} SHARED=$SHARED bash "$ROOT/experiments/grid.sh"
