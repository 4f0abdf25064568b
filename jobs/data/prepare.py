"""`phi data prepare`: sample chat data, validate it, split it 80/20, write it atomically.

The default source is ultrachat_200k's `train_sft` split, streamed from the hub so that
only the rows kept are downloaded (the first N rows of the split; a percentage is turned
into N from the split's row count in the dataset's metadata). `--from PATH` reads a local
JSONL or Parquet file instead. Only `messages` is kept: ultrachat rows also carry `prompt`
and `prompt_id`, and with those present TRL takes the data for prompt/completion pairs.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.data.chat_format import read_jsonl, validate_rows
from jobs.errors import UsageError

DEFAULT_DATASET = "HuggingFaceH4/ultrachat_200k"
DEFAULT_SPLIT = "train_sft"
TRAIN_FILE = "train_data.jsonl"
TEST_FILE = "test_data.jsonl"


class DataError(UsageError):
    """Bad arguments or bad data; nothing was written."""


@dataclass(frozen=True)
class SampleSize:
    """How much of the source to keep: a percentage or a row count."""

    percent: float | None = None
    rows: int | None = None

    @classmethod
    def parse(cls, text: str) -> SampleSize:
        rule = "must be a percentage in (0, 100] such as 1% or 0.5%, or a row count such as 10"
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*", text)
        if match is None:
            raise DataError(f"--sample {text!r}: {rule}")
        number, is_percent = float(match.group(1)), match.group(2) == "%"
        if is_percent:
            if not 0 < number <= 100:
                raise DataError(f"--sample {text!r}: {rule}")
            return cls(percent=number)
        if not number.is_integer() or number < 2:
            raise DataError(f"--sample {text!r}: a row count must be a whole number of at least 2")
        return cls(rows=int(number))

    def rows_of(self, total: int) -> int:
        if self.rows is not None:
            return min(self.rows, total)
        assert self.percent is not None
        return min(total, max(1, math.ceil(total * self.percent / 100)))


Numbered = tuple[int, Any, str | None]
"""(line or row number, row, parse error)."""


def _local_rows(path: Path, size: SampleSize) -> list[Numbered]:
    if not path.is_file():
        raise DataError(f"--from {path}: no such file")
    if path.suffix in (".jsonl", ".json"):
        rows = list(read_jsonl(path))
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        rows = [(index + 1, row, None) for index, row in enumerate(table.to_pylist())]
    else:
        raise DataError(f"--from {path}: must be a .jsonl or .parquet file")
    return rows[: size.rows_of(len(rows))]


def _hub_rows(dataset: str, split: str, size: SampleSize) -> list[Numbered]:
    import datasets

    if size.rows is not None:
        wanted = size.rows
    else:
        splits = datasets.load_dataset_builder(dataset).info.splits or {}
        if split not in splits:
            raise DataError(
                f"--split {split!r}: {dataset} has {', '.join(splits) or 'no known'} splits"
            )
        wanted = size.rows_of(splits[split].num_examples)
    stream = datasets.load_dataset(dataset, split=split, streaming=True)
    return [(index + 1, row, None) for index, row in enumerate(stream.take(wanted))]


def load_rows(
    *, dataset: str, split: str, from_path: Path | None, size: SampleSize
) -> list[Numbered]:
    if from_path is not None:
        return _local_rows(from_path, size)
    return _hub_rows(dataset, split, size)


def split_rows(
    rows: Sequence[Any], seed: int, test_fraction: float = 0.2
) -> tuple[list[Any], list[Any]]:
    """A seeded shuffle, then the first `test_fraction` (at least one row) for test."""
    if len(rows) < 2:
        raise DataError(f"{len(rows)} row(s) cannot be split into train and test; keep at least 2")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)  # noqa: S311 - a reproducible split, not a secret
    test_count = max(1, round(len(rows) * test_fraction))
    test = [rows[i] for i in sorted(order[:test_count])]
    train = [rows[i] for i in sorted(order[test_count:])]
    return train, test


def write_jsonl_atomically(files: dict[Path, list[Any]]) -> None:
    """Write every file to a temporary sibling first; replace the targets only when all are written."""
    staged: list[tuple[str, Path]] = []
    try:
        for target, rows in files.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            staged.append((temporary, target))
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
                out.flush()
                os.fsync(out.fileno())
        for temporary, target in staged:
            os.replace(temporary, target)
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.unlink(temporary)


@dataclass(frozen=True)
class Prepared:
    train: Path
    test: Path
    train_rows: int
    test_rows: int


def prepare(
    *,
    out_dir: Path,
    size: SampleSize,
    seed: int,
    dataset: str = DEFAULT_DATASET,
    split: str = DEFAULT_SPLIT,
    from_path: Path | None = None,
) -> Prepared:
    """Load, validate, split and write. Raises DataError, writing nothing, on bad data."""
    numbered = load_rows(dataset=dataset, split=split, from_path=from_path, size=size)
    source = str(from_path) if from_path is not None else f"{dataset}:{split}"
    report = validate_rows(iter(numbered), Path(source))
    if not report.ok:
        shown = "\n".join(f"  {source}:{line}: {reason}" for line, reason in report.problems[:20])
        more = len(report.problems) - 20
        raise DataError(
            f"{len(report.problems)} problem(s) in {source}; nothing was written:\n{shown}"
            + (f"\n  ... and {more} more" if more > 0 else "")
        )
    rows = [{"messages": row["messages"]} for _, row, _ in numbered]
    train, test = split_rows(rows, seed)
    paths = Prepared(out_dir / TRAIN_FILE, out_dir / TEST_FILE, len(train), len(test))
    write_jsonl_atomically({paths.train: train, paths.test: test})
    return paths


def iter_messages(path: Path) -> Iterator[list[dict[str, str]]]:
    """The `messages` of each valid row of a prepared file."""
    for _, row, error in read_jsonl(path):
        if error is None and isinstance(row, dict):
            yield row["messages"]
