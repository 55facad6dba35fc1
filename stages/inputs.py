"""DVC stage `inputs` (always run): md5 of the local task and corpus files -> data/inputs/*.json."""

from pipeline.inputs import write_records
from pipeline.stage import run_stage


def run(params):
    return write_records(params.task, params.collect, params.pretrain.source)


if __name__ == "__main__":
    # bookkeeping, not an experiment step: no W&B run
    run_stage("inputs", run, track=False, outputs=("data/inputs/task.json", "data/inputs/corpus.json"))
