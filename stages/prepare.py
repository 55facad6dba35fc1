"""DVC stage `prepare`: task dataset -> data/task/{train,dev,test}.parquet + labels.json."""

from pipeline.data import prepare_task
from pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage("prepare", lambda params: prepare_task(params.task, "data/task", params.collect), "metrics/prepare.json",
              seed=lambda params: params.task.seed, outputs=("data/task",))  # the split and demo subsets
