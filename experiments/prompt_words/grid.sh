#!/usr/bin/env bash
# Issue 43's real-word grid (docs/results.md, "Prompt vs [CLS] on real words", pre-registered there before its
# runs): the prompt classifier (finetune.model prompt, the default template `{text} It was {mask}.` and verbalizer
# {0: [terrible], 1: [great]}) against [CLS] fine-tuning (flat), on IMDB at LABELS "32 100 1000" labelled reviews,
# SEEDS "1 2 3 4 5", on a base whose MLM head is trained and which has done MLM on no review
# (experiments/prompt_words/base: `(cd experiments/prompt_words && dvc repro)` first), with three MLM arms:
#   none      the base as it is
#   task      MLM on the task's training text (the labelled reviews' text), 1,000,000 tokens at lr 1e-4
#   task-tpl  the same with each document wrapped in the template (pretrain.prompt_corpus true, Shi & Lipani 2023)
# Fine-tuning is one fixed recipe for both classifiers: about STEPS=210 optimizer steps at batch 16 (epochs =
# ceil(STEPS / steps per epoch)), the last epoch kept (no dev-based choice), lr 2e-5, layer decay 0.95, warmup
# 10%; dev the size of the train set (reported only); the same 5,000 test reviews.
# Runs are named pw-<labels>-<flat|prompt>[-tpl]-<strategy>-seed<seed>, the smallest label count first, and in it
# the arms in ARMS order (default: none, task-tpl, task, so the two primaries finish first), each arm's prompt and
# flat runs together; then the tables (the commands at the end). Run from the project root:
#     bash experiments/prompt_words/grid.sh
set -euo pipefail
ROOT=$(pwd)
HERE=$ROOT/experiments/prompt_words
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
BASE=${BASE:-$HERE/base}
LABELS=${LABELS:-"32 100 1000"}
SEEDS=${SEEDS:-"1 2 3 4 5"}
MODELS=${MODELS:-"prompt flat"}
ARMS=${ARMS:-"none task-tpl task"}  # the primaries' arms first (P1: none, P2: task-tpl against none)
STEPS=${STEPS:-210}
BATCH=16
# shellcheck source=experiments/fixed_steps.sh
source "$ROOT/experiments/fixed_steps.sh"
[ -f "$BASE/config.json" ] || { echo "no base at $BASE: run 'dvc repro' in $HERE first" >&2; exit 2; }
for labels in $LABELS; do
  epochs=$(fixed_epochs "$STEPS" "$labels" "$BATCH")
  for arm in $ARMS; do
    for model in $MODELS; do
      tpl=false strategy=$arm suffix=""
      [ "$arm" = task-tpl ] && tpl=true strategy=task suffix=-tpl
      COMMON_ARGS="-S task.dataset=$SHARED/data/imdb -S task.demo.train=$labels -S task.demo.dev=$labels
        -S task.demo.test=5000 -S model.name=$BASE -S model.max_length=128 -S collect.corpora_dir=$ROOT/corpora
        -S pretrain.max_tokens=1000000 -S pretrain.lr=1e-4 -S pretrain.eval_max_tokens=50000
        -S pretrain.prompt_corpus=$tpl -S finetune.model=$model -S finetune.lr=2e-5 -S finetune.batch_size=$BATCH
        -S finetune.epochs=$epochs -S finetune.patience=0 -S finetune.keep=last" \
      PREFIX=pw-$labels-$model$suffix STRATEGIES=$strategy SEEDS=$SEEDS OUT=$HERE/reports/$labels-$model-$arm \
        SHARED=$SHARED bash "$ROOT/experiments/grid.sh"
    done
  done
done
names() {  # names "labels" "models" "arms (none task task-tpl)"
  for l in $1; do for m in $2; do for a in $3; do for s in $SEEDS; do
    case $a in task-tpl) echo "pw-$l-$m-tpl-task-seed$s" ;; *) echo "pw-$l-$m-$a-seed$s" ;; esac
  done; done; done; done
}
# 1. prompt - flat at each label count, per MLM arm (the two classifiers paired by fine-tuning seed)
for arm in none task task-tpl; do
  # shellcheck disable=SC2046
  python -m pipeline.compare --exps $(names "$LABELS" "prompt flat" $arm) --arm finetune.model --baseline flat \
    --by task.demo.train --out "$HERE/reports/prompt-vs-flat/$arm"
done
# 2. each MLM arm against none, per classifier
for model in prompt flat; do
  for arm in task task-tpl; do
    # shellcheck disable=SC2046
    python -m pipeline.compare --exps $(names "$LABELS" $model "none $arm") --by task.demo.train \
      --out "$HERE/reports/mlm/$model-$arm"
  done
done
# 3. the two pre-registered primaries, Holm over the two (P1: prompt - flat at 32 labels on none; P2: the prompt
#    classifier at 32 labels, task-tpl - none)
python -m pipeline.holm \
  "P1=$HERE/reports/prompt-vs-flat/none/compare-by-task.demo.train.json:32:prompt" \
  "P2=$HERE/reports/mlm/prompt-task-tpl/compare-by-task.demo.train.json:32:task" --out "$HERE/reports/primaries.json"
