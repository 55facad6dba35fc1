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
# shellcheck source=experiments/spike_in/recipe.sh
source "$HERE/recipe.sh"
K=${K:-100}; MIX=${MIX:-1}; tag=$(printf "k%03d" "$K")
OUT=$HERE/.grid/oracle-$tag-m$MIX
python -m experiments.spike_in.oracle --model "$MODEL_DIR" --k "$K" --mix "$MIX" --out "$OUT"
for seed in ${SEEDS:-1}; do
  # the grid's recipe (grid.sh), with the oracle base and no MLM
  # shellcheck disable=SC2046  # the recipe is a word list by design
  dvc exp run --temp -n "${PREFIX:-spikef1}-$tag-oracle-m$MIX-seed$seed" $(spike_recipe "$tag" "$OUT") \
    -S pretrain.source=none -S seed="$seed"
done
