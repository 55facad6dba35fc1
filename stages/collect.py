"""DVC stage `collect`: corpora/<pretrain.source>.yaml -> data/corpus/corpus.parquet + metrics/corpus.json."""

from pipeline.config import check_budget, check_lengths
from pipeline.corpus import build_corpus
from pipeline.lineage import check_lineage, corpus_lineage
from pipeline.model import load_config, load_tokenizer
from pipeline.stage import run_stage


def run(params):
    tokenizer = None
    if params.pretrain.source != "none":
        check_budget(params.pretrain, launch=params.launch)  # before the draw: a tiny budget is not a corpus problem
    check_lineage(params, "task")
    if params.pretrain.source != "none":
        check_lengths(params, load_config(params.model.name, params.model.trust_remote_code))
        tokenizer = load_tokenizer(params.model.name, params.model.trust_remote_code)
    return build_corpus(params.task, params.collect, params.dedup, params.pretrain, tokenizer, task_dir="data/task",
                        out_dir="data/corpus", made_from=corpus_lineage(params, "data/task"))


if __name__ == "__main__":
    run_stage("collect", run, "metrics/corpus.json", seed=lambda params: params.pretrain.seed,  # the draw
              outputs=("data/corpus",))
