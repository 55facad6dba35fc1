#!/usr/bin/env bash
# The pre-registered few-label replication (issue 44; docs/results.md, "A pre-registered few-label replication",
# which fixes this recipe before its runs). Its defaults ARE that recipe:
#   - LABELS "100" labelled training reviews (task.demo.train), DRAWS "1 2" draws of them (task.demo.train_seed;
#     dev and test stay task.seed's draw), dev the size of the train set (reported, never used to select),
#     the same 5,000 test reviews for every run;
#   - STRATEGIES "none task in_domain", in_domain = IMDB `unsup` alone (corpora/local_unsup), MLM 2,000,000
#     tokens (MAX_TOKENS), the head warm-up of all-MiniLM-L6-v2 (200,000 tokens), PRETRAIN_SEEDS "1 2"
#     (`none` trains no MLM: pretrain.seed 1 only);
#   - fine-tuning a fixed number of steps, no dev-based choice: about STEPS=210 optimizer steps (epochs =
#     ceil(STEPS / steps per epoch) at batch 16), the last epoch kept (finetune.keep last, patience 0), lr 2e-5,
#     layer decay 0.95, warmup 10%; SEEDS "1 ... 10" fine-tuning seeds.
# The label curve of `none` for pipeline.labels: LABELS="150 200 250 300 500" STRATEGIES=none PRETRAIN_SEEDS=1.
#     MODEL_DIR=$(../shared/scripts/offline-model.sh) bash experiments/few_label.sh
# Runs are named fewlabel-d<draw>-p<pretrain seed>-<strategy>-<labels>-seed<seed>. Each finished run is exported
# to RECORDS (default experiments/records/few-label, committed with the code; pipeline.records), and a run with a
# record there is not run again: the grid outlives the machine it started on. Runs go a pretrained model at a time
# (one grid.sh per strategy: the 10 seeds of one MLM model together, then the next), so a grid resumed on another
# machine rebuilds a model half-way only if a machine was lost inside one (models are not kept; start a model
# only with its ~45 minutes ahead on 2 CPU cores). Then
#     python -m pipeline.compare --runs experiments/records/few-label/fewlabel-*.json --by task.demo.train
set -euo pipefail
ROOT=$(pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
MODEL_DIR=${MODEL_DIR:-$("$SHARED/scripts/offline-model.sh")}
LABELS=${LABELS:-100}
DRAWS=${DRAWS:-"1 2"}
PRETRAIN_SEEDS=${PRETRAIN_SEEDS:-"1 2"}
STRATEGIES=${STRATEGIES:-"none task in_domain"}
SEEDS=${SEEDS:-"1 2 3 4 5 6 7 8 9 10"}
STEPS=${STEPS:-210}
BATCH=16
# shellcheck source=experiments/fixed_steps.sh
source "$ROOT/experiments/fixed_steps.sh"
WORK=$ROOT/experiments/.few_label
RECORDS=${RECORDS:-$ROOT/experiments/records/few-label}
mkdir -p "$WORK/corpora"
for f in "$ROOT"/corpora/local_unsup/*.yaml; do
  sed "s#path: \.\./shared/#path: $SHARED/#" "$f" > "$WORK/corpora/$(basename "$f")"
done
for labels in $LABELS; do
  epochs=$(fixed_epochs "$STEPS" "$labels" "$BATCH")
  for draw in $DRAWS; do
    for p in $PRETRAIN_SEEDS; do
      strategies=$STRATEGIES
      [ "$p" != "$(echo "$PRETRAIN_SEEDS" | awk '{print $1}')" ] && strategies=$(echo "$STRATEGIES" | sed 's/\bnone\b//')
      [ -z "${strategies// /}" ] && continue
      common="-S task.dataset=$SHARED/data/imdb -S task.demo.test=5000 -S task.demo.dev=$labels
        -S task.demo.train_seed=$draw -S model.name=$MODEL_DIR -S model.max_length=128
        -S collect.corpora_dir=$WORK/corpora -S pretrain.max_tokens=${MAX_TOKENS:-2000000} -S pretrain.seed=$p
        -S pretrain.eval_max_tokens=50000 -S pretrain.head_warmup_tokens=200000
        -S finetune.lr=2e-5 -S finetune.batch_size=$BATCH -S finetune.epochs=$epochs -S finetune.patience=0
        -S finetune.keep=last"
      # a pretrained model at a time (above); COMPARE=0: the registered analysis reads the records once every run
      # is in (docs/results.md), so no group's result is printed while the grid runs
      for s in $strategies; do
        COMPARE=0 COMMON_ARGS=$common RECORDS=$RECORDS PREFIX=fewlabel-d$draw-p$p STRATEGIES=$s SEEDS=$SEEDS \
          BY=task.demo.train VALUES=$labels OUT=$WORK/reports/d$draw-p$p-$labels-$s SHARED=$SHARED \
          bash "$ROOT/experiments/grid.sh"
      done
    done
  done
done
