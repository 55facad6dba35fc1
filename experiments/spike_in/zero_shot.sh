#!/usr/bin/env bash
# The output-role spike-in (issue 43; docs/results.md, "Prompt-based classification: the output-role spike-in",
# pre-registered there before these runs). A prompt classifier scored zero-shot (`finetune.epochs: 0`) through
# the MLM head, its verbalizer the two planted nonce forms (data/map.json: the positive form for label 1, the
# negative for 0), on the MLM-ready base, which has a trained head and has never seen the forms. Only MLM on the
# shifted reviews (`in_domain` at K = 100) can tell the head which form stands where a positive or a negative
# word stood. Run from the project root, after `dvc repro` in experiments/spike_in and in
# experiments/spike_in/adapted:
#     bash experiments/spike_in/zero_shot.sh
# Order (each step blocks until its runs are done; the first already answers the main question):
#   1. K = 100, 1M MLM tokens: `in_domain` and `none`, pretrain.seed 1 and 2
#   2. K = 100, 1M: `task` and `cross_domain`, pretrain.seed 1 and 2
#   3. K = 0, 1M: `in_domain` and `none`, pretrain.seed 1 and 2
#   4. the budget curve at K = 100: `in_domain` at 250,000 tokens (pretrain.seed 1 and 2), 3,000,000 (seed 1, then 2)
#   5. the calibrated follow-up (pre-registered after steps 1 and 2, before its runs): K = 100, 1M, zero-shot scores
#      calibrated on content-free texts (finetune.prompt.calibrate content_free): `in_domain` and `none` at five new
#      MLM seeds, pretrain.seed 3 to 7 (runs zs-1m-cal-k100-...)
#   6. its secondary: seeds 1 and 2 again, calibrated (their uncalibrated scores were seen before the registration)
# Runs are named zs-<budget>-kNNN-<strategy>-<pretrain.seed>-seed1; the fine-tuning seed stays 1 (zero-shot
# trains nothing), so `compare` pairs the runs over pretrain.seed. STEPS picks steps (default "1 2 3 4 5 6").
set -euo pipefail
ROOT=$(pwd)
HERE=$ROOT/experiments/spike_in
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
MODEL_DIR=${MODEL_DIR:-$HERE/base}
STEPS=${STEPS:-"1 2 3 4 5 6"}
# shellcheck source=experiments/spike_in/recipe.sh
source "$HERE/recipe.sh"
[ -f "$HERE/data/map.json" ] || { echo "no shifted data: run 'dvc repro' in $HERE first" >&2; exit 2; }
[ -f "$MODEL_DIR/config.json" ] || {
  echo "no MLM-ready base at $MODEL_DIR: run 'dvc repro' in $HERE/adapted first" >&2; exit 2; }
# the verbalizer: each polarity's nonce form from the map, label 1 positive and 0 negative (IMDB's labels)
VERBALIZER=$(python -c "
import json, sys
table = json.load(open(sys.argv[1]))['table']
form = {r['polarity']: r['nonce'] for r in table}
print('{1:[%s],0:[%s]}' % (form['positive'], form['negative']))" "$HERE/data/map.json")

names() {  # names BUDGET TAG "strategies" "pretrain seeds"
  for p in $4; do for s in $3; do echo "zs-$1-$2-$s-$p-seed1"; done; done
}

zero_shot() {  # zero_shot BUDGET_LABEL TOKENS K "strategies" "pretrain seeds" [extra experiments for compare]
  local tag dir
  tag=$(printf "k%03d" "$3")
  dir=$(corpora "$tag")
  COMMON_ARGS="-S task.dataset=$HERE/data/task -S task.test_split=test_$tag -S task.demo.train=1000
    -S task.demo.dev=1000 -S task.demo.test=5000 -S model.name=$MODEL_DIR -S model.max_length=128
    -S pretrain.eval_max_tokens=50000 -S pretrain.max_tokens=$2 -S pretrain.lr=2e-4 -S collect.corpora_dir=$dir
    -S finetune.model=prompt -S finetune.epochs=0 -S finetune.prompt.verbalizer=$VERBALIZER
    -S finetune.prompt.calibrate=${CALIBRATE:-none}" \
  PREFIX=zs-$1-$tag STRATEGIES=$4 SEEDS=1 BY=pretrain.seed VALUES=$5 OUT=$HERE/reports/zero-shot/$1-$tag \
  EXTRA_EXPS="${6:-}" SHARED=$SHARED bash "$ROOT/experiments/grid.sh"
}

NONE100=$(names 1m k100 none "1 2" | tr '\n' ' ')
for step in $STEPS; do
  case $step in
    1) zero_shot 1m 1000000 100 "in_domain none" "1 2" ;;
    2) zero_shot 1m 1000000 100 "task cross_domain" "1 2" "$NONE100" ;;
    3) zero_shot 1m 1000000 0 "in_domain none" "1 2" ;;
    4) zero_shot 250k 250000 100 in_domain "1 2" "$NONE100"
       zero_shot 3m 3000000 100 in_domain 1 "$NONE100"
       zero_shot 3m 3000000 100 in_domain 2 "$NONE100" ;;
    5) CALIBRATE=content_free zero_shot 1m-cal 1000000 100 "in_domain none" "3 4 5 6 7" ;;
    6) CALIBRATE=content_free zero_shot 1m-cal 1000000 100 "in_domain none" "1 2" ;;
  esac
done
# The tables of docs/results.md, once the steps that make them have run: the four strategies at K = 100 and the
# K = 0 pair (one group per K), and `in_domain` against `none` over the MLM budget at K = 100 (none, which trains
# no MLM, borrowed at each budget).
if [[ " $STEPS " == *" 4 "* ]]; then
  # shellcheck disable=SC2046
  python -m pipeline.compare --exps $(names 1m k100 "none task in_domain cross_domain" "1 2") \
    $(names 1m k000 "none in_domain" "1 2") --by task.test_split --out "$HERE/reports/zero-shot/strategies"
  # shellcheck disable=SC2046
  python -m pipeline.compare --exps $(names 1m k100 "none in_domain" "1 2") $(names 250k k100 in_domain "1 2") \
    $(names 3m k100 in_domain "1 2") --by pretrain.max_tokens --out "$HERE/reports/zero-shot/budget"
fi
# The calibrated follow-up's primary comparison: the five new MLM seeds
if [[ " $STEPS " == *" 5 "* ]]; then
  # shellcheck disable=SC2046
  python -m pipeline.compare --exps $(names 1m-cal k100 "none in_domain" "3 4 5 6 7") \
    --out "$HERE/reports/zero-shot/calibrated"
fi
