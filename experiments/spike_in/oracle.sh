#!/usr/bin/env bash
# The spike-in's upper bound (oracle.py): the base with its nonce rows set MIX (default 1) of the way to
# their words' mean embedding, fine-tuned and tested like `none` at K (default 100), fine-tuning SEEDS
# (default 1). Runs now, beside the queue (dvc exp run --temp). From the project root:
#     MODEL_DIR=$(../shared/scripts/offline-model.sh) bash experiments/spike_in/oracle.sh
# then `python -m experiments.paired PREFIX-kNNN-none-seed1 PREFIX-kNNN-oracle-mMIX-seed1`.
set -euo pipefail
ROOT=$(pwd)
HERE=$ROOT/experiments/spike_in
MODEL_DIR=${MODEL_DIR:-$("$ROOT/../shared/scripts/offline-model.sh")}
K=${K:-100}; MIX=${MIX:-1}; tag=$(printf "k%03d" "$K")
OUT=$HERE/.grid/oracle-$tag-m$MIX
python -m experiments.spike_in.oracle --model "$MODEL_DIR" --k "$K" --mix "$MIX" --out "$OUT"
for seed in ${SEEDS:-1}; do
  # the grid's recipe (grid.sh), with the oracle base and no MLM
  dvc exp run --temp -n "${PREFIX:-spikef1}-$tag-oracle-m$MIX-seed$seed" -S task.dataset="$HERE/data/task" \
    -S task.test_split="test_$tag" -S task.demo.train=1000 -S task.demo.dev=1000 -S task.demo.test=5000 \
    -S model.name="$OUT" -S model.max_length=128 -S pretrain.source=none -S pretrain.eval_max_tokens=50000 \
    -S seed="$seed"
done
