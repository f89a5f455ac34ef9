"""Read a table of labelled examples (CSV, TSV, JSON, JSONL, Parquet) into records that know where they came from.

Shared by the tasks that read files: GLUE's named-column files, ``classification`` and ``causal_lm``, which also
share the data-source options (:func:`check_data_options`, :func:`local_data_files`). It imports nothing of the tasks.

Every record carries ``where``, the place an error message should point at: ``"train.csv, line 7"`` for the line
a CSV/TSV record starts on (the header is line 1; a quoted field may span lines), the line of a JSONL record, the line
a JSON array element starts on, and ``"data.parquet, row 3"`` for Parquet, which has no lines (rows count from 1).

* CSV: comma-separated with a header row and ``"`` quoting (Python's ``csv`` module, the Excel dialect).
* TSV: the same with tabs, as Python's ``csv`` and pandas write it (a field that starts with ``"`` is quoted; a
  quote inside a field is text). The original GLUE TSVs, which never quote, are read by ``tasks/glue``.
* JSON: an array of objects, or an object whose ``data`` key holds that array. JSONL: one object per line.
* Parquet: read with pyarrow (a dependency of ``datasets``).

Text files must be UTF-8 (a leading byte-order mark is allowed); other bytes raise a ``ValueError`` naming the file,
the line, the column when the file has a header, and how to convert it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SUFFIXES",
    "Record",
    "Table",
    "check_data_options",
    "local_data_files",
    "read_hub_tables",
    "read_table",
    "read_utf8",
]

csv.field_size_limit(2**30)

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
_ICONV = "convert it, e.g. `iconv -f latin1 -t utf-8 {name} > utf8-{name}`, or save it as UTF-8 from your editor"


@dataclass(frozen=True)
class Record:
    where: str
    """``"<file>, line N"`` (or ``row N`` where the format has no lines), for error messages."""
    values: dict[str, Any]


@dataclass(frozen=True)
class Table:
    path: Path
    columns: tuple[str, ...] | None
    """The header (CSV, TSV, Parquet); None for JSON and JSONL, whose records name their own keys."""
    records: list[Record]


def _bad_bytes(path: Path, data: bytes, error: UnicodeDecodeError) -> ValueError:
    """The message for the first non-UTF-8 byte: its line, its position, and for CSV/TSV its column."""
    line_start = data.rfind(b"\n", 0, error.start) + 1
    line = data.count(b"\n", 0, error.start) + 1
    byte = data[error.start : error.start + 1].hex()
    column = ""
    if path.suffix in (".csv", ".tsv") and line > 1:
        header_end = data.find(b"\n")
        prefix = data[line_start : error.start].decode("utf-8", errors="replace")
        delimiter = "\t" if path.suffix == ".tsv" else ","
        try:
            header = next(
                csv.reader([data[:header_end].decode("utf-8").lstrip("\ufeff").rstrip("\r")], delimiter=delimiter)
            )
            fields = next(csv.reader([prefix], delimiter=delimiter), [""])
            if len(fields) <= len(header):
                column = f", column {header[len(fields) - 1]!r}"
        except (UnicodeDecodeError, StopIteration):
            pass
    return ValueError(
        f"{path}, line {line}{column}: byte 0x{byte} (byte {error.start - line_start + 1} of the line) is not UTF-8; "
        f"the file must be UTF-8: {_ICONV.format(name=path.name)}."
    )


def read_utf8(path: str | Path) -> str:
    """The text of ``path`` decoded as UTF-8 (a leading byte-order mark dropped); non-UTF-8 bytes raise a
    ``ValueError`` that names the line and the fix."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _bad_bytes(path, data, error) from None
    return text.removeprefix("\ufeff")


def _read_delimited(path: Path, text: str) -> Table:
    tsv = path.suffix == ".tsv"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if tsv else ",")
    header: list[str] | None = None
    records = []
    previous = 0  # physical lines read before the current record: it starts on line previous + 1
    try:
        for row in reader:
            start, previous = previous + 1, reader.line_num
            if not row or row == [""]:
                continue  # a blank line
            if header is None:
                header = [name.strip() for name in row]
                continue
            if len(row) != len(header):
                quote = "a tab" if tsv else 'a comma ("like, this")'
                raise ValueError(
                    f"{path}, line {start}: {len(row)} fields but the header (line 1) has "
                    f"{len(header)}; quote a text that holds {quote}."
                )
            records.append(Record(f"{path}, line {start}", dict(zip(header, row, strict=True))))
    except csv.Error as error:
        raise ValueError(f"{path}, line {reader.line_num}: not valid {'TSV' if tsv else 'CSV'} ({error}).") from None
    return Table(path, tuple(header or ()), records)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _json_array_start(text: str, document: Any, path: Path) -> int:
    """The index of the ``[`` of the records array: the document itself, or its top-level ``data`` value."""
    start = _skip_space(text, 0)
    if isinstance(document, list):
        return start
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ValueError(
            f"{path}: expected a JSON array of objects (or an object whose 'data' key holds one); "
            "for one object per line, name the file .jsonl."
        )
    decoder, position, found = json.JSONDecoder(), start + 1, None
    while True:  # walk the top-level keys; json.loads keeps the last of repeated keys, so do we
        key, position = decoder.raw_decode(text, _skip_space(text, position))
        position = _skip_space(text, _skip_space(text, position) + 1)  # past the ':'
        if key == "data":
            found = position
        _, position = decoder.raw_decode(text, position)
        position = _skip_space(text, position)
        if text[position] != ",":
            return found  # type: ignore[return-value]
        position += 1


def _read_json(path: Path, text: str) -> Table:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {error.lineno}: not valid JSON ({error.msg}).") from None
    decoder, records = json.JSONDecoder(), []
    position = _skip_space(text, _json_array_start(text, document, path) + 1)
    line, counted = 1, 0
    while text[position] != "]":
        line, counted = line + text.count("\n", counted, position), position
        value, position = decoder.raw_decode(text, position)
        records.append(Record(f"{path}, line {line}", value))
        position = _skip_space(text, position)
        position = _skip_space(text, position + 1) if text[position] == "," else position
    return Table(path, None, records)


def _read_jsonl(path: Path, text: str) -> Table:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(Record(f"{path}, line {number}", json.loads(line)))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}, line {number}: not valid JSON ({error.msg}); a .jsonl file holds one JSON object per line."
            ) from None
    return Table(path, None, records)


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise ImportError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow).") from None
    try:
        table = parquet.read_table(path)
    except Exception as error:  # pyarrow raises its own ArrowInvalid/OSError family
        raise ValueError(f"{path}: not a readable Parquet file ({error}).") from None
    rows = table.to_pylist()
    return Table(path, tuple(table.column_names), [Record(f"{path}, row {i}", row) for i, row in enumerate(rows, 1)])


def read_table(path: str | Path) -> Table:
    """The records of a CSV, TSV, JSON, JSONL or Parquet file (by its suffix), each with its line (or row)."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}.")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file.")
    if path.suffix == ".parquet":
        table = _read_parquet(path)
    else:
        text = read_utf8(path)
        reader = {".csv": _read_delimited, ".tsv": _read_delimited, ".json": _read_json, ".jsonl": _read_jsonl}
        table = reader[path.suffix](path, text)
    for record in table.records:
        if not isinstance(record.values, dict):
            raise ValueError(f"{record.where}: expected an object with named columns, got {record.values!r}.")
    return table


def read_hub_tables(name: str, config: str | None, splits: dict[str, str]) -> list[Table]:
    """The records of the splits of the Hub dataset ``name`` (configuration ``config``), loaded once; ``splits``
    maps each option name (``train_split``) to its split. Records are placed as ``"Hub dataset NAME, split 'S',
    row N"``; a missing split names the ones there are and its option."""
    from datasets import load_dataset

    dataset = load_dataset(name, config) if config else load_dataset(name)
    tables = []
    for option, split in splits.items():
        if split not in dataset:
            raise ValueError(
                f"Hub dataset {name} has no split {split!r} (it has {', '.join(dataset)}); set task_options.{option}."
            )
        rows = dataset[split]
        where = f"Hub dataset {name}" + (f" ({config})" if config else "") + f", split {split!r}"
        records = [Record(f"{where}, row {i}", row) for i, row in enumerate(rows, 1)]
        tables.append(Table(Path(where), tuple(rows.column_names), records))
    return tables


def check_data_options(train_file: str | None, dev_file: str | None, hub_dataset: str | None, example: str) -> None:
    """The data-source task options of a task that reads files (``classification``, ``causal_lm``): train_file and
    dev_file go together, exclude hub_dataset, and must exist. ``example`` names two files, e.g. ``train.csv``."""
    if (train_file is None) != (dev_file is None):
        train, dev = example.split()
        raise ValueError(
            "task_options.train_file and task_options.dev_file go together; give both (e.g. "
            f"task_options.train_file={train} task_options.dev_file={dev}) or a --data folder."
        )
    if train_file is not None and hub_dataset is not None:
        raise ValueError(
            "task_options.hub_dataset and task_options.train_file/dev_file exclude each other; keep one data source."
        )
    for name, path in (("train_file", train_file), ("dev_file", dev_file)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"task_options.{name}: no such file {path}.")


def local_data_files(
    data: str | Path | None, train_file: str | None, dev_file: str | None, task: str, expected: str
) -> tuple[Path, Path]:
    """The train and dev files of a run: ``task_options.train_file``/``dev_file``, or the ``train.*`` and ``dev.*``
    (or ``validation.*``) of the ``--data`` folder (one of each, any of :data:`SUFFIXES`). ``expected`` describes the
    data for error messages."""
    if train_file is not None:
        if data is not None:
            raise ValueError(f"--data {data} and task_options.train_file/dev_file both name data; keep one.")
        return Path(train_file), Path(dev_file)  # type: ignore[arg-type]
    if data is None:
        raise ValueError(f"task {task} has no data: give --data FOLDER ({expected}).")
    folder = Path(data)
    if not folder.is_dir():
        raise FileNotFoundError(f"--data {folder} is not a folder; expected one with {expected}.")

    def find(stems: tuple[str, ...]) -> Path:
        candidates = [folder / f"{stem}{suffix}" for stem in stems for suffix in SUFFIXES]
        found = [path for path in candidates if path.is_file()]
        if not found:
            looked = ", ".join(f"{stem}.{{{','.join(x[1:] for x in SUFFIXES)}}}" for stem in stems)
            raise FileNotFoundError(
                f"{folder}: no {stems[0]} file (looked for {looked}); or name the files with "
                "task_options.train_file/dev_file."
            )
        if len(found) > 1:
            raise ValueError(
                f"{folder}: several {stems[0]} files ({', '.join(p.name for p in found)}); keep one, "
                "or name them with task_options.train_file/dev_file."
            )
        return found[0]

    return find(("train",)), find(("dev", "validation"))
