# The spike-in runs' shared recipe (sourced by grid.sh and oracle.sh): spike_recipe TAG MODEL prints the
# -S options for the shifted task at TAG (kNNN) and the model MODEL: MiniLM at 128 tokens, the same
# 1000 train / 1000 dev / 5000 test reviews, Sun et al.'s fine-tuning as the recorded runs had it (lr 2e-5,
# layer decay 0.95, at most 6 epochs, the best dev epoch kept, patience 2).
spike_recipe() {
  echo "-S task.dataset=$HERE/data/task -S task.test_split=test_$1 -S task.demo.train=1000 -S task.demo.dev=1000
    -S task.demo.test=5000 -S model.name=$2 -S model.max_length=128 -S pretrain.eval_max_tokens=50000
    -S finetune.lr=2e-5 -S finetune.epochs=6"
}

# corpora TAG prints the corpora folder of one K (kNNN), with absolute paths (queued runs work in temporary copies):
# in_domain the shifted IMDB `unsup`, task the training text, cross_domain the shared news and Usenet text.
# Needs ROOT, HERE and SHARED.
corpora() {
  local dir=$HERE/.grid/corpora/$1
  mkdir -p "$dir"
  cp "$ROOT/corpora/task.yaml" "$dir/task.yaml"
  sed "s#path: \.\./shared/#path: $SHARED/#" "$ROOT/corpora/local/cross_domain.yaml" > "$dir/cross_domain.yaml"
  cat > "$dir/in_domain.yaml" <<EOF
description: IMDB unlabeled reviews with the spike-in map at $1 applied
sources:
  - name: imdb_unsup_shifted
    path: $HERE/data/corpus/unsup_$1.jsonl.gz
    weight: 1.0
    licence: IMDB Large Movie Review Dataset (Maas et al. 2011), research use
EOF
  echo "$dir"
}
