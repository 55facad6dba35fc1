"""DVC stage `prepare`: task dataset -> data/task/{train,dev,test}.parquet + labels.json."""

from pipeline.data import prepare_task
from pipeline.lineage import task_lineage
from pipeline.stage import run_stage


def run(params):
    return prepare_task(params.task, "data/task", params.dedup, made_from=task_lineage(params))


if __name__ == "__main__":
    run_stage("prepare", run, "metrics/prepare.json",
              seed=lambda params: params.task.seed, outputs=("data/task",))  # the split and demo subsets
