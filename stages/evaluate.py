"""DVC stage `evaluate`: test set -> metrics/eval.json, plots/, outputs/predictions.csv."""

import shutil

import numpy as np

from pipeline.console import result_block
from pipeline.artifacts import load_prepared
from pipeline.evaluate import bucket_of, metrics_from_predictions, predict
from pipeline.encoding import encode_split
from pipeline.io import read_json, write_csv
from pipeline.lineage import check_lineage
from pipeline.classifier import load_classifier
from pipeline.model import load_tokenizer
from pipeline.stage import run_stage

MODEL, WORK_DIR = "models/classifier", "models/.evaluate-work"


def run(params):
    check_lineage(params, "task")
    names = read_json("data/task/labels.json")["names"]
    tokenizer = load_tokenizer(MODEL, params.model.trust_remote_code)
    model = load_classifier(MODEL, params.model.trust_remote_code, hub_kernels=params.train.hub_kernels)
    test = encode_split(load_prepared("test", "data/task"), tokenizer, params.model.max_length, params.finetune)
    probs = predict(model, tokenizer, test, params.train, params.finetune.eval_batch_size, WORK_DIR)
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    preds, labels = probs.argmax(-1), np.asarray(test["label"])
    lengths = np.asarray(test["full_length"])
    metrics = metrics_from_predictions(labels, preds, names, lengths, probs)
    prob_cols = [f"prob_{n}" for n in names]
    rows = [{"id": i, "label": names[y], "pred": names[p], "correct": int(y == p), "length": n,
             "bucket": bucket_of(n), **{c: round(float(v), 6) for c, v in zip(prob_cols, pr)}}
            for i, y, p, n, pr in zip(test["id"], labels, preds, lengths, probs)]
    write_csv("outputs/predictions.csv", rows, ["id", "label", "pred", "correct", "length", "bucket", *prob_cols])
    write_csv("plots/confusion.csv", [{"actual": r["label"], "predicted": r["pred"]} for r in rows],
              ["actual", "predicted"])
    write_csv("plots/length_buckets.csv",
              [{"bucket": b, **v} for b, v in metrics["length_buckets"].items()], ["bucket", "examples", "accuracy"])
    return {**metrics, "hub_kernels": params.train.hub_kernels}


if __name__ == "__main__":
    run_stage("evaluate", run, "metrics/eval.json", then=lambda params: print(result_block(params.pretrain.source)),
              outputs=("outputs/predictions.csv", "plots/confusion.csv", "plots/length_buckets.csv"))
