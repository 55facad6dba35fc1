"""Reading local data files (task splits and corpus sources): checked before Arrow sees them, and
counted, so that every record a file holds is read or the stage stops naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import ConfigError
from pipeline.io import no_space_left

if TYPE_CHECKING:  # datasets is imported where a file is loaded: `inputs`, which only hashes files, imports this
    from datasets import Dataset

# Local formats `prepare` accepts, by file ending, with the `datasets` builder that reads them.
LOCAL_FORMATS = {
    ".jsonl.gz": "json", ".jsonl": "json", ".json.gz": "json", ".json": "json",
    ".csv.gz": "csv", ".csv": "csv", ".parquet": "parquet",
}


def open_maybe_gz(path: Path, mode: str, **kwargs):
    """`open`, or `gzip.open` for a `.gz` file."""
    import gzip

    return (gzip.open if path.name.endswith(".gz") else open)(path, mode, **kwargs)


def check_utf8(path: Path) -> dict:
    """Text files must be UTF-8: Arrow accepts bad bytes at load time and fails later, mid-run. Returns the
    file's lines counted on the way (`records`: non-blank, `blank_lines`): a JSON Lines file's records, so
    that the file is read once for both."""
    import codecs
    import gzip
    import zlib

    decoder = codecs.getincrementaldecoder("utf-8")()
    records = blank = 0
    text = None  # whether the line read so far holds more than white space; None: no line started
    try:
        with open_maybe_gz(path, "rb") as fh:
            # lines, in pieces of at most 1 MiB (a one-line JSON array stays bounded in memory); the
            # incremental decoder carries a UTF-8 sequence cut between pieces
            for piece in iter(lambda: fh.readline(1 << 20), b""):
                try:
                    decoder.decode(piece)
                except UnicodeDecodeError as exc:
                    raise ConfigError(f"{path}: not valid UTF-8 near line {records + blank + 1} ({exc.reason}); "
                                      f"re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).") from exc
                text = bool(text) or bool(piece.strip())
                if piece.endswith(b"\n"):
                    records, blank, text = records + text, blank + (not text), None
            if text is not None:  # a last line without a newline
                records, blank = records + text, blank + (not text)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ConfigError(f"{path}: the gzip data is truncated or corrupt after line {records + blank + 1} ({exc}); "
                          f"copy or download the file again (`gzip -t {path.name}` checks it).") from exc
    return {"records": records, "blank_lines": blank}


def cr_only_line_ends(path: Path) -> bool:
    with open_maybe_gz(path, "rb") as fh:
        head = fh.read(1 << 20)
    return b"\r" in head and b"\n" not in head


def first_bad_json_line(path: Path) -> str:
    """Where a JSON Lines file stops parsing: ' (line N: reason)', or '' if every line parses."""
    import json

    with open_maybe_gz(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    return f" (line {n}: {exc.msg} at column {exc.colno})"
                if not isinstance(record, dict):
                    return f" (line {n}: a JSON {type(record).__name__}, where each line must be one object of fields)"
    return ""


def check_parquet_columns(path: Path) -> None:
    """A Parquet file whose schema names a column twice (pyarrow writes one; datasets cannot read it)."""
    import pyarrow.parquet as pq

    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except Exception as exc:  # not Parquet at all: said with the file's name, not as pyarrow's error
        raise ConfigError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}); write it again, "
                          f"or use JSON Lines or CSV.") from None
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{path}: the schema names the column {', '.join(f'`{n}`' for n in twice)} more than once "
                          f"({len(names)} columns: {', '.join(names[:8])}); rename or drop one, so that each field "
                          f"has one column.")


def count_csv_records(path: Path) -> dict:
    """A CSV file's rows after the header, each checked against it (in the same pass as the header itself: a
    column named twice would be kept once and the other renamed): a row with more fields than the header
    names (an unquoted comma in a text: the reader would take the first field as an index and cut every text)
    and a quote left open that takes in lines shaped like records of their own (a stray quote: those records
    would vanish into one text) are refused, naming the line. A quoted field may still span lines.

    "Shaped like a record": as many fields as the header, and in each column that holds few distinct values
    (a label), a value found there in the single-line rows."""
    import csv

    records = blank = 0
    spanning = []  # (first line, last line, row) of the records that span lines
    many = 200  # a column with more distinct values than this in single-line rows is free text
    with open_maybe_gz(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        named: dict[str, int] = {}
        for i, name in enumerate(header, 1):
            if name in named:
                raise ConfigError(f"{path}: the header names the column `{name}` twice (columns {named[name]} and "
                                  f"{i}); rename or remove one, so that each field has one column.")
            named[name] = i
        seen: list[set] = [set() for _ in header]  # each column's values in single-line rows
        last = reader.line_num
        for row in reader:
            start, last = last + 1, reader.line_num
            if not row:
                blank += 1
                continue
            if len(row) > len(header):
                raise ConfigError(
                    f"{path}: line {start} has {len(row)} fields, but the header names {len(header)} "
                    f"({', '.join(map(repr, header[:6]))}): a text with an unquoted comma? Read this way, the first "
                    f"field would become an index and each text would lose its start. Quote every field that "
                    f"holds a comma (\"like, this\"), or write the file as JSON Lines.")
            if last > start:
                spanning.append((start, last, row))
            else:
                for values, value in zip(seen, row):
                    if len(values) <= many:
                        values.add(value)
            records += 1
    categorical = [j for j, values in enumerate(seen) if 0 < len(values) <= many]
    for start, last, row in spanning if len(header) > 1 and categorical else ():
        swallowed = [line for field in row for line in field.splitlines()[1:]
                     if len(fields := next(csv.reader([line]), [])) == len(header)
                     and all(fields[j] in seen[j] for j in categorical)]
        if swallowed:
            raise ConfigError(
                f"{path}: the quote opened on line {start} closes only on line {last}, and {len(swallowed)} of the "
                f"lines it takes in look like records of their own (e.g. {swallowed[0][:60]!r}): a stray quote would "
                f"merge them into one text. Close the quote, or write a quote inside a quoted field as two (\"\").")
    return {"records": records, "blank_lines": blank}


def count_records(path: Path, builder: str, lines: dict | None = None) -> dict:
    """The records `path` holds, counted as its format defines them, apart from `datasets`: JSON Lines,
    one per non-blank line (blank lines are counted apart: readers skip them), which `lines` (check_utf8's
    count) already holds; a JSON array, its items; CSV, the rows after the header (blank lines apart; a
    quoted field may span lines); Parquet, its row count."""
    if builder == "parquet":
        import pyarrow.parquet as pq
        return {"records": pq.ParquetFile(path).metadata.num_rows, "blank_lines": 0}
    if builder == "csv":
        return lines if lines is not None else count_csv_records(path)
    with open_maybe_gz(path, "rb") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(b"["):
        import json
        with open_maybe_gz(path, "rt", encoding="utf-8") as fh:
            return {"records": len(json.load(fh)), "blank_lines": 0}
    return lines if lines is not None else check_utf8(path)


def load_local_file(path: Path, fix: str = "point task.dataset at a directory with data",
                    counts: dict | None = None) -> Dataset:
    """A local file of a supported format as a Dataset; an unreadable one is refused, naming the file,
    the line where one is known, and `fix`. The one file loader of the task data and the corpora.
    Every record the file holds (`count_records`) must come out: `counts[path]` gets both figures."""
    builder = next((b for ext, b in LOCAL_FORMATS.items() if path.name.endswith(ext)), None)
    if builder is None:
        raise ConfigError(f"{path}: unknown format; use one of {', '.join(LOCAL_FORMATS)}.")
    if path.stat().st_size == 0:
        raise ConfigError(f"{path}: the file is empty; {fix}.")
    if builder == "parquet":
        check_parquet_columns(path)
    lines = check_utf8(path) if builder != "parquet" else None  # Arrow takes bad bytes, then fails mid-run
    if lines is not None and lines["records"] + lines["blank_lines"] <= 1 and cr_only_line_ends(path):
        raise ConfigError(f"{path}: its lines end with a carriage return alone (CR, old Mac OS), which the "
                          f"readers here do not all split alike; convert them to LF (e.g. `tr '\\r' '\\n' < "
                          f"{path.name} > fixed.{path.name.split('.', 1)[-1]}`), then point at the fixed file.")
    if builder == "csv":
        lines = count_csv_records(path)  # records by CSV's rules (a quoted field may span lines), each checked
        if lines["records"] == 0:
            raise ConfigError(f"{path}: a header and no records; {fix}.")
    try:
        from datasets import load_dataset

        ds = load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # datasets wraps decode and parse errors in several types
        if no_space_left(exc):
            from datasets import config as datasets_config
            raise ConfigError(f"{path}: no space left on the device while datasets converted it to Arrow in its "
                              f"cache ({datasets_config.HF_DATASETS_CACHE}); the file itself is fine. Free space "
                              f"there, or set HF_DATASETS_CACHE to a disk with room.") from exc
        where = first_bad_json_line(path) if builder == "json" and ".jsonl" in path.name else ""
        raise ConfigError(f"{path}: cannot be read as {builder}{where} ({type(exc).__name__}: {exc}); "
                          f"check the file is UTF-8 {builder}.") from exc
    if len(ds) == 0:
        raise ConfigError(f"{path}: no records; {fix}.")
    found = count_records(path, builder, lines)
    if found["records"] != len(ds):
        raise ConfigError(f"{path}: the file holds {found['records']:,} records as its format counts them, but "
                          f"{len(ds):,} were read: records would be lost without a count. Check the file's "
                          f"structure (one JSON object per line; one CSV row per record, quotes closed); {fix}.")
    if counts is not None:
        counts[str(path)] = {**found, "read": len(ds)}
    return ds


# ---------------------------------------------------------------------------- a task folder's split files
def _split_files(directory: Path, split: str) -> list[Path]:
    return [directory / f"{split}{ext}" for ext in LOCAL_FORMATS if (directory / f"{split}{ext}").is_file()]


def split_file(directory: Path, split: str) -> Path | None:
    """The file of `split` in a local task directory, or None (several: the first; `prepare` refuses that)."""
    found = _split_files(directory, split)
    return found[0] if found else None


def find_split_file(directory: Path, split: str) -> Path:
    found = _split_files(directory, split)
    if not found:
        raise ConfigError(
            f"task.dataset: no `{split}` file in {directory}; expected one of "
            f"{', '.join(split + ext for ext in LOCAL_FORMATS)}."
        )
    if len(found) > 1:
        raise ConfigError(f"task.dataset: several `{split}` files in {directory}: "
                          f"{', '.join(p.name for p in found)}; keep one.")
    return found[0]
