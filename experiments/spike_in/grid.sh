#!/usr/bin/env bash
# The spike-in grid (docs/results.md, "Spike-in control"): `dvc repro` in experiments/spike_in first, then from
# the project root
#     MODEL_DIR=$(../shared/scripts/offline-model.sh) bash experiments/spike_in/grid.sh
# Order, so that the first results already answer the main question:
#   1. at the chosen K (K, default 100): the four strategies, fine-tuning seed 1, `in_domain` first;
#   2. at the chosen K: the four strategies, the other SEEDS (default "2 3"; DVC's run cache reuses
#      each strategy's corpus and MLM model: pretrain.seed is the same);
#   3. the K curve (CURVE, default "0 40 10"): `none` and `in_domain`, seeds CURVE_SEEDS (default 1).
# Then one `compare --by task.test_split` over every run (one group per K; the test file names the K).
# Runs are named PREFIX-kNNN-<strategy>-seed<seed> (PREFIX default `spike`).
# Each K has its own shifted test split (task.test_split test_kNNN of the one task folder, whose train
# split is the unshifted IMDB train) and its own corpora folder: in_domain is the shifted IMDB `unsup`,
# task the (unshifted) training text, cross_domain the shared news and Usenet text. Every run: the same
# 1000 train / 1000 dev (unshifted, carved from train) / 5000 test reviews (task.seed 42), the same MLM
# budget and recipe; only pretrain.source and the seed change within a K.
set -euo pipefail
ROOT=$(pwd)
HERE=$ROOT/experiments/spike_in
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
MODEL_DIR=${MODEL_DIR:-$("$SHARED/scripts/offline-model.sh")}
K=${K:-100}
CURVE=${CURVE:-"0 40 10"}
SEEDS=${SEEDS:-"2 3"}
CURVE_SEEDS=${CURVE_SEEDS:-1}
# shellcheck source=experiments/spike_in/recipe.sh
source "$HERE/recipe.sh"
[ -f "$HERE/data/map.json" ] || { echo "no shifted data: run 'dvc repro' in $HERE first" >&2; exit 2; }

names=()
run_k() {  # run_k K "strategies" "seeds"
  local tag dir
  tag=$(printf "k%03d" "$1")
  dir=$(corpora "$tag")
  # The recipe: MiniLM with head warm-up (its MLM head is not shipped); MLM 1M tokens at lr 2e-4 for every
  # strategy (at 5e-5 the nonce embeddings did not move in the probe: Adam moves a weight by at most about
  # the lr per step, and 1M tokens are 245 steps); the rest is recipe.sh's.
  COMMON_ARGS="$(spike_recipe "$tag" "$MODEL_DIR") -S collect.corpora_dir=$dir
    -S pretrain.max_tokens=${MAX_TOKENS:-1000000} -S pretrain.lr=${MLM_LR:-2e-4} -S pretrain.head_warmup_tokens=200000" \
  PREFIX=${PREFIX:-spike}-$tag STRATEGIES=$2 SEEDS=$3 OUT=$HERE/reports/$tag SHARED=$SHARED \
    bash "$ROOT/experiments/grid.sh"
  for seed in $3; do for s in $2; do names+=("${PREFIX:-spike}-$tag-$s-seed$seed"); done; done
}

run_k "$K" "in_domain none task cross_domain" 1
[ -n "$SEEDS" ] && run_k "$K" "in_domain none task cross_domain" "$SEEDS"
for k in $CURVE; do run_k "$k" "in_domain none" "$CURVE_SEEDS"; done
python -m pipeline.compare --exps "${names[@]}" --by task.test_split --out "$HERE/reports"
