# Sourced by the few-label grids (experiments/few_label.sh, experiments/prompt_words/grid.sh): fine-tuning for a
# fixed number of optimizer steps whatever the label count, so that 32 and 1,000 labels get the same training.
# fixed_epochs STEPS LABELS BATCH -> ceil(STEPS / steps per epoch), steps per epoch = ceil(LABELS / BATCH)
fixed_epochs() {
  local per_epoch=$(( ($2 + $3 - 1) / $3 ))
  echo $(( ($1 + per_epoch - 1) / per_epoch ))
}
