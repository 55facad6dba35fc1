"""Every results table in the README and docs/ names the command that made it (issue 44).

A table is a run of lines starting with `|` that holds a `|---` separator line. A table that reports no
measured result (a list of options, a pre-registration) is marked by `<!-- not a results table -->` on the
line right before it; every other table needs a command within WINDOW lines before its first line or after
its last: `python -m ...`, `bash ...`, `dvc ...`, `torchrun ...`, `python bench/...` or `python experiments/...`,
in a code block, inline code or a "Command:" line.

A second, simpler check: no line presents a p-value of a paired bootstrap averaged over several seeds (the
test-sampling-only interval without a seed term, docs/design.md "Statistics") unless it says it is exploratory.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = "<!-- not a results table -->"
WINDOW = 15
COMMAND = re.compile(r"python -m |bash |dvc |torchrun |python bench/|python experiments/")
SEPARATOR = re.compile(r"^\s*\|\s*:?-{3,}")

# Tables that report no measured result, in pages this issue does not edit (their owners may instead put
# MARKER before them): page -> the table's header line.
EXEMPT = {
    "docs/design.md": {"| stage | outputs | metrics / plots |"},               # what each stage writes
    "docs/reliability.md": {"| message | fix |"},                              # messages and their fixes
    "docs/collect-on-datatrove.md": {"| b × r (hashes) | (1/b)^(1/r) | P(0.6) | P(0.7) | P(0.75) | P(0.8) | P(0.85) | P(0.9) |"},  # LSH arithmetic
}


def tables(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) 0-based line indices of each markdown table: consecutive lines starting with `|`
    (indented ones too, inside a list item) that include a separator line."""
    found, i = [], 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|"):
            j = i
            while j + 1 < len(lines) and lines[j + 1].lstrip().startswith("|"):
                j += 1
            if any(SEPARATOR.match(line) for line in lines[i:j + 1]):
                found.append((i, j))
            i = j + 1
        else:
            i += 1
    return found


def exempt(page: str, lines: list[str], first: int) -> bool:
    if first > 0 and lines[first - 1].strip() == MARKER:
        return True
    return lines[first].strip() in EXEMPT.get(page, set())


def missing_commands(page: Path, root: Path = ROOT) -> list[str]:
    name = page.relative_to(root).as_posix()
    lines = page.read_text(encoding="utf-8").splitlines()
    bad = []
    for first, last in tables(lines):
        if exempt(name, lines, first):
            continue
        window = lines[max(0, first - WINDOW):first] + lines[last + 1:last + 1 + WINDOW]
        if not any(COMMAND.search(line) for line in window):
            bad.append(f"{name}:{first + 1}: results table without a command within {WINDOW} lines "
                       f"({lines[first].strip()[:80]!r}); name the command or mark it {MARKER}")
    return bad


def test_tables_are_found():
    lines = ["text", "", "| a | b |", "|---|---:|", "| 1 | 2 |", "", "  | c |", "  |---|", "  | 3 |", "", "| no | separator |"]
    assert tables(lines) == [(2, 4), (6, 8)]


def test_a_table_without_a_command_is_reported(tmp_path):
    page = tmp_path / "docs" / "x.md"
    page.parent.mkdir()
    filler = ["filler"] * (WINDOW + 1)
    text = ["python -m pipeline.compare", *filler, "| a | b |", "|---|---|", "| 1 | 2 |", *filler,
            "", "python -m pipeline.compare --runs r", "| c |", "|---|", "| 3 |",
            *filler, MARKER, "| options |", "|---|", "| x |"]
    page.write_text("\n".join(text), encoding="utf-8")
    bad = missing_commands(page, tmp_path)
    assert len(bad) == 1 and bad[0].startswith(f"docs/x.md:{WINDOW + 3}:"), bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_results_table_names_its_command(page):
    bad = missing_commands(page)
    assert not bad, "\n".join(bad)


P_VALUE = re.compile(r"\bp\s*(?:[<=]\s*)?0?\.\d|\bp-values?\b|\bp\s*<\s*0\.\d", re.I)
AVERAGED = re.compile(r"paired bootstrap[^.]*averaged over (?:the )?(?:\d+ |three |several )?seeds", re.I)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_seed_averaged_bootstrap_p_value_stands_as_a_finding(page):
    """A line that gives a p-value for a paired bootstrap averaged over seeds must call it exploratory
    (design.md: such intervals rejected a true null in 32% of simulated 3-seed grids)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    bad = [f"{page.relative_to(ROOT)}:{n}: {line.strip()[:100]}" for n, line in enumerate(lines, 1)
           if AVERAGED.search(line) and P_VALUE.search(line) and "exploratory" not in line.lower()]
    assert not bad, "a test-sampling-only p-value stands as a finding:\n" + "\n".join(bad)
