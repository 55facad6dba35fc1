"""dvc.yaml stays true to the code: every stage declares, as a dependency, each project module its
command imports, directly or through other modules (found by reading the imports, not by running
them), and declares no module it does not import. So editing any code a stage runs makes
`dvc repro` run it again."""

import ast
import contextlib
import importlib
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fixtures import ROOT

PACKAGES = ("pipeline", "stages", "experiments")
PIPELINES = ["dvc.yaml", "experiments/positive_control/dvc.yaml", "experiments/spike_in/dvc.yaml",
             "experiments/spike_in/adapted/dvc.yaml", "experiments/prompt_words/dvc.yaml"]


def module_file(name: str) -> Path | None:
    path = ROOT / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Project modules that `path` imports (`from pipeline import x` counts module pipeline.x if it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in PACKAGES and module_file(n)}
    # runpy.run_module(...) in stages/launch.py runs the stage named on the command line, not an import
    return found


def closure(modules: list[str]) -> set[str]:
    seen, todo = set(), list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += imported_modules(module_file(name))
    files = {module_file(n) for n in seen}
    return {str(f.relative_to(ROOT)) for f in files if f.name != "__init__.py" or f.stat().st_size}


def stage_modules(cmd: str) -> list[str]:
    # `python -m stages.launch stages.pretrain`: the launcher and the stage module it runs
    return re.findall(r"\b((?:stages|pipeline|experiments)(?:\.\w+)+)", cmd)


def stages():
    for pipeline in PIPELINES:
        spec = yaml.safe_load((ROOT / pipeline).read_text())
        for name, stage in spec["stages"].items():
            yield pytest.param(pipeline, name, stage, id=f"{pipeline}:{name}")


@pytest.mark.parametrize("pipeline, name, stage", stages())
def test_stage_declares_exactly_the_modules_it_runs(pipeline, name, stage):
    wdir = (ROOT / pipeline).parent / stage.get("wdir", ".")
    modules = stage_modules(stage["cmd"])
    assert modules, f"{pipeline}:{name}: cannot tell which module `{stage['cmd']}` runs"
    needed = closure(modules)
    declared = {str((wdir / d).resolve().relative_to(ROOT)) for d in stage.get("deps", [])
                if str(d).endswith(".py")}
    missing, extra = sorted(needed - declared), sorted(declared - needed)
    assert not missing and not extra, (f"{pipeline}:{name}: add these deps: {missing}; remove these (not run by "
                                       f"the stage): {extra}")


def run_stage_outputs(module: str) -> set[str]:
    """The paths a stage module hands run_stage: its metrics file (third argument) and `outputs`."""
    tree = ast.parse(module_file(module).read_text(encoding="utf-8"))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "run_stage")
    found = {ast.literal_eval(call.args[2])} if len(call.args) > 2 else set()
    for kw in call.keywords:
        if kw.arg == "outputs":
            found |= set(ast.literal_eval(kw.value))
        if kw.arg == "metrics_path":
            found.add(ast.literal_eval(kw.value))
    return found


@pytest.mark.parametrize("name, stage", yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items())
def test_stage_checks_before_work_exactly_the_outputs_dvc_yaml_declares(name, stage):
    declared = {next(iter(o)) if isinstance(o, dict) else o
                for kind in ("outs", "metrics", "plots") for o in stage.get(kind, [])}
    module = [m for m in stage_modules(stage["cmd"]) if m != "stages.launch"][-1]
    assert run_stage_outputs(module) == declared, (
        f"dvc.yaml:{name} declares {sorted(declared)}; {module} passes run_stage {sorted(run_stage_outputs(module))}")


# ---------------------------------------------------------------------------- params read per stage
@contextlib.contextmanager
def recorded_param_reads():
    """Record every params key read (`section.key`, dotted) while the block runs.

    Each params model (section) gets a recording `__getattribute__` for its leaf fields. Reads made
    only to validate the params (every key at load; lengths against the model's positions), to name a run (the resume fingerprint
    hashes whole sections) or to set the process's allocator (speed only) are not counted: they decide whether
    a stage may start or resume, or how fast it runs, not what it computes.
    """
    from pipeline import config

    reads: set[str] = set()
    paused = [False]
    prefixes = {config.Params: "", config.Task: "task.", config.Demo: "task.demo.", config.Model: "model.",
                config.Collect: "collect.", config.Pretrain: "pretrain.", config.Finetune: "finetune.",
                config.Train: "train.", config.Launch: "launch.", config.Tracking: "tracking.",
                config.Prompt: "finetune.prompt.", config.Slurm: "collect.slurm.", config.Ray: "collect.ray."}
    saved = {cls: cls.__getattribute__ for cls in prefixes}
    for cls, prefix in prefixes.items():
        leaves = {name for name, f in cls.model_fields.items() if f.annotation not in prefixes}

        def getattribute(self, name, _get=saved[cls], _prefix=prefix, _leaves=leaves):
            if name in _leaves and not paused[0]:
                reads.add(_prefix + name)
            return _get(self, name)
        cls.__getattribute__ = getattribute
    def unrecorded(fn):
        def call(*args, **kwargs):
            paused[0] = True
            try:
                return fn(*args, **kwargs)
            finally:
                paused[0] = False
        return call
    # (module, name) of the functions whose reads are not counted, wherever a module imported them by name
    targets = [(m, n) for m, mod in list(sys.modules.items()) if m.startswith(("pipeline", "stages"))
               for n in ("fingerprint", "_check_ranges", "check_lengths", "check_budget", "set_process_allocator",
                         "check_lineage")
               if getattr(mod, n, None) is not None]
    originals = {(m, n): getattr(sys.modules[m], n) for m, n in targets}
    try:
        for (m, n), fn in originals.items():
            setattr(sys.modules[m], n, unrecorded(fn))
        yield reads
    finally:
        for (m, n), fn in originals.items():
            setattr(sys.modules[m], n, fn)
        for cls, get in saved.items():
            cls.__getattribute__ = get


def run_stage_in_process(project: Path, name: str, cmd: str) -> set[str]:
    """The params keys a stage's command reads, running it here in `project` (as `dvc repro` would)."""
    from pipeline.config import load_params
    from pipeline.distributed import torchrun_command

    module = stage_modules(cmd)[-1]
    importlib.import_module(module)  # so the recorder can reach names the stage imported
    with recorded_param_reads() as reads:
        if "stages.launch" in cmd:
            torchrun_command(load_params("params.yaml").launch, module)
        runpy.run_module(module, run_name="__main__")
    return reads


def covered(key: str, declared: list[str]) -> bool:
    return any(key == d or key.startswith(d + ".") for d in declared)


def test_every_stage_declares_exactly_the_params_it_reads(tmp_path, monkeypatch):
    """Runs the whole pipeline on the fixture project, in process, recording the params each stage reads."""
    from fixtures import make_project, set_params

    project = make_project(tmp_path)
    set_params(project, **{"train.checkpoint_steps": 0, "finetune.epochs": 1, "pretrain.max_tokens": 4000})
    monkeypatch.chdir(project)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    reads = {name: run_stage_in_process(project, name, stage["cmd"]) for name, stage in spec["stages"].items()}
    # the hierarchical classifier reads its own keys (chunks, pooling): run the stages that build it again
    set_params(project, **{"finetune.model": "hierarchical"})
    for name in ("finetune", "evaluate"):
        reads[name] |= run_stage_in_process(project, name, spec["stages"][name]["cmd"])
    # and the prompt classifier its own (the template; on a `none` base, whether its MLM head is warmed up)
    set_params(project, **{"finetune.model": "prompt", "pretrain.prompt_corpus": True})
    for name in ("collect", "pretrain", "finetune", "evaluate"):
        reads[name] |= run_stage_in_process(project, name, spec["stages"][name]["cmd"])
    problems = []
    for name, stage in spec["stages"].items():
        declared = [str(p) for p in stage.get("params", [])]
        missing = sorted(k for k in reads[name] if not covered(k, declared))
        unread = sorted(d for d in declared if not any(covered(k, [d]) for k in reads[name]))
        if missing or unread:
            problems.append(f"dvc.yaml:{name}: add params {missing}; remove params it never reads {unread}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------- local inputs by content
def test_editing_a_local_input_in_place_reruns_what_reads_it(tmp_path):
    from fixtures import make_project

    project = make_project(tmp_path)

    def repro():
        result = subprocess.run(["dvc", "repro", "collect"], cwd=project, capture_output=True, text=True,
                                env={**os.environ, "WANDB_MODE": "disabled"})
        assert result.returncode == 0, result.stderr[-3000:]
        return {s for s in ("prepare", "collect") if f"Running stage '{s}'" in result.stdout}

    assert repro() == {"prepare", "collect"}
    assert repro() == set()  # nothing edited: only the hashing stage runs
    task_file = tmp_path / "fixtures/task/train.jsonl"  # outside the project, named by task.dataset
    rows = task_file.read_text().splitlines()
    task_file.write_text("\n".join(rows[:-1] + [rows[-1].replace('"label": 1', '"label": 0')]) + "\n")
    assert repro() == {"prepare", "collect"}
    source = tmp_path / "fixtures/corpora_data/news_a.jsonl"  # a corpus source file: collect only
    with source.open("a") as fh:
        fh.write(json.dumps({"body": "Market shares rose in trade on the bank rates report today."}) + "\n")
    # the default source is task (corpora/task.yaml reads data/task): point it at the news corpus
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["pretrain"]["source"] = "cross_domain"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert repro() == {"collect"}
    with source.open("a") as fh:
        fh.write(json.dumps({"body": "Officials said growth in the quarter beat the forecast again."}) + "\n")
    assert repro() == {"collect"}
    assert repro() == set()


# ---------------------------------------------------------------------------- an edit re-runs what runs it
def test_an_edit_reruns_only_the_stages_that_run_the_edited_code(tmp_path):
    """Issue 45: each stage's deps are what it runs, so an edit to corpus code that leaves the corpus as it was
    re-runs `collect` alone (DVC sees data/corpus unchanged and skips MLM pretraining and all after it), and an
    edit to a classifier re-runs neither `collect` nor `pretrain`."""
    from fixtures import make_project

    # cross_domain: a corpus the datatrove pool builds from the fixture's news sources
    project = make_project(tmp_path, **{"finetune.epochs": 1, "pretrain.source": "cross_domain"})
    names = ("prepare", "collect", "pretrain", "finetune", "evaluate")

    def repro():
        result = subprocess.run(["dvc", "repro"], cwd=project, capture_output=True, text=True,
                                env={**os.environ, "WANDB_MODE": "disabled"})
        assert result.returncode == 0, result.stderr[-3000:]
        return {s for s in names if f"Running stage '{s}'" in result.stdout}

    def edit(module: str) -> None:  # a change of code that computes nothing new
        with (project / "pipeline" / module).open("a") as fh:
            fh.write("\n# an edit that changes no result\n")

    assert repro() == set(names)
    edit("collect_steps.py")
    assert repro() == {"collect"}
    edit("hierarchical.py")
    assert repro() == {"finetune", "evaluate"}
    edit("corpus.py")
    assert repro() == {"collect"}


def test_the_inputs_stage_imports_no_heavy_library(tmp_path):
    """`inputs` runs on every `dvc repro` and only hashes files: it must not pay for torch, datasets or
    scikit-learn (about 3 s of imports on a laptop CPU; bench/bench_imports.py prints each stage's)."""
    from fixtures import make_project

    project = make_project(tmp_path)
    code = ("import runpy, sys; sys.argv = ['stages.inputs']; runpy.run_module('stages.inputs', run_name='__main__'); "
            "print(sorted(m for m in ('torch', 'datasets', 'sklearn', 'transformers', 'datatrove') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (project / "data/inputs/task.json").is_file()  # the stage did its work
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
