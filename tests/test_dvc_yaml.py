"""dvc.yaml stays true to the code: every stage declares, as a dependency, each project module its
command imports, directly or through other modules (found by reading the imports, not by running
them), and declares no module it does not import. So editing any code a stage runs makes
`dvc repro` run it again."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from fixtures import ROOT

PACKAGES = ("pipeline", "stages", "experiments")
PIPELINES = ["dvc.yaml", "experiments/positive_control/dvc.yaml"]


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
