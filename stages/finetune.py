"""DVC stage `finetune`: classifier on models/pretrained -> models/classifier + metrics/finetune.json."""

import shutil
from pathlib import Path

from pipeline.config import check_lengths
from pipeline.artifacts import load_prepared
from pipeline.distributed import is_main_process
from pipeline.encoding import encode_split
from pipeline.finetune import finetune
from pipeline.io import atomic_dir, read_json, write_csv
from pipeline.lineage import check_lineage
from pipeline.classifier import load_classifier
from pipeline.model import load_config, load_tokenizer
from pipeline.prompt import calibrate, prompt_for
from pipeline.stage import run_stage
from pipeline.training import fingerprint

BASE, WORK_DIR = "models/pretrained", "models/.finetune-work"  # the resumable checkpoints


def run(params):
    trust_remote_code = params.model.trust_remote_code
    check_lineage(params, "task")
    check_lengths(params, load_config(BASE, trust_remote_code))
    labels = read_json("data/task/labels.json")
    names = labels["names"]
    tokenizer = load_tokenizer(BASE, trust_remote_code)
    prompt = prompt_for(tokenizer, params.finetune, labels, BASE)  # finetune.model prompt: label words checked first
    train = encode_split(load_prepared("train", "data/task"), tokenizer, params.model.max_length, params.finetune)
    dev = encode_split(load_prepared("dev", "data/task"), tokenizer, params.model.max_length, params.finetune)
    model = load_classifier(BASE, trust_remote_code, params.finetune, names, hub_kernels=params.train.hub_kernels,
                            prompt=prompt)
    calibration = {}
    if params.finetune.prompt.calibrate == "content_free":  # zero-shot: scored, and saved, calibrated
        calibration = {"calibration": calibrate(model, tokenizer, params.finetune, params.model.max_length)}
    run_id = fingerprint({k: getattr(params, k) for k in ("seed", "model", "finetune", "train")},
                         ["data/task/train.parquet", "data/task/dev.parquet", *sorted(Path(BASE).glob("*.safetensors"))])
    trainer, stats, curve = finetune(model, tokenizer, train, dev, params.finetune, params.train, params.seed,
                                     WORK_DIR, run_id)
    if is_main_process():
        with atomic_dir("models/classifier") as tmp:
            trainer.save_model(str(tmp))
        write_csv("plots/finetune_curve.csv", curve,
                  ["epoch", "dev_accuracy", "dev_macro_f1", "dev_loss", "train_loss"])
        shutil.rmtree(WORK_DIR, ignore_errors=True)
    return {**stats, **calibration, "hub_kernels": params.train.hub_kernels}


if __name__ == "__main__":
    run_stage("finetune", run, "metrics/finetune.json", seed=lambda params: params.seed, checkpoints=(WORK_DIR,),
              outputs=("models/classifier", "plots/finetune_curve.csv"))
