"""`phi data prepare`: sample chat data, validate it, split it 80/20, write it atomically.

The default source is ultrachat_200k's `train_sft` split, streamed from the hub so that
only the rows kept are downloaded (the first N rows of the split; a percentage is turned
into N from the split's row count in the dataset's metadata). `--from PATH` reads a local
JSONL or Parquet file instead. Only `messages` is kept: ultrachat rows also carry `prompt`
and `prompt_id`, and with those present TRL takes the data for prompt/completion pairs.

`task="preference"` (`--task preference`) does the same for DPO's pairs: checked by
`preference_format.row_problems`, written in TRL's explicit spelling (`normalize`: prompt,
chosen, rejected, nothing else) to `preference_format.TRAIN_FILE` and `EVAL_FILE`
(train_pairs.jsonl, eval_pairs.jsonl), beside the chat files; the hub default is
`preference_format.DEFAULT_DATASET`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.core.renames import renamed
from finetune_phi.data import hub, preference_format
from finetune_phi.data.chat_format import (
    UnreadableFileError,
    file_problem,
    read_rows,
    row_problems,
    validate_rows,
)

DEFAULT_DATASET = "HuggingFaceH4/ultrachat_200k"
DEFAULT_SPLIT = "train_sft"
DATA_DIR = Path("data")
"""Where `phi data prepare` writes, and where `phi finetune submit` reads, by default."""
TRAIN_FILE = "train_data.jsonl"
EVAL_FILE = "eval_data.jsonl"
"""The held-out split: what the trainer evaluates on and `phi eval` compares models on."""
OLD_EVAL_FILE = "test_data.jsonl"
"""Its name before 0.2 (CHANGELOG.md)."""


class DataError(UsageError):
    """Bad arguments or bad data; nothing was written."""


class FlaggedDataError(PhiError):
    """Content screening flagged rows and `--screen refuse` refused them; nothing was written."""


SCREEN_MODES = ("refuse", "drop")
Screener = Callable[[str, list[tuple[int, Any]]], Mapping[int, Mapping[str, int]]]
"""(source name, numbered rows) -> the flagged rows' line numbers with the severities that
reached the threshold (finetune_phi.safety does the screening; the command line wires it)."""


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


def _local_rows(path: Path) -> list[Numbered]:
    """Every row of a local file (blank lines left out), each with its line or row number.
    Its name follows the same rule as `phi data validate`'s (chat_format.SUFFIX_RULE)."""
    if not path.exists():
        raise DataError(f"--from {path}: no such file")
    problem = file_problem(path, parquet=True)
    if problem is not None:
        raise DataError(f"--from {path}: {problem}")
    try:
        return [row for row in read_rows(path) if row[1] is not None or row[2] is not None]
    except UnreadableFileError as error:
        raise DataError(f"--from {error}") from None
    except OSError as error:
        raise DataError(f"--from {path}: cannot read it ({error.strerror or error})") from None


def _hub_rows(dataset: str, split: str, size: SampleSize) -> list[Numbered]:
    import datasets

    hub.require(dataset, "--dataset", "a local file: --from FILE.jsonl")
    try:
        return _stream_rows(datasets, dataset, split, size)
    except (ConnectionError, OSError, datasets.exceptions.DatasetNotFoundError) as error:
        raise hub.offline_failure(dataset, "--dataset", "--from FILE.jsonl", error) from None


def _stream_rows(datasets: Any, dataset: str, split: str, size: SampleSize) -> list[Numbered]:

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


HUB_SAMPLE = SampleSize(percent=1)
"""What `phi data prepare` keeps of a hub dataset unless --sample says otherwise."""


def split_rows(
    rows: Sequence[Any], seed: int, test_fraction: float = 0.2
) -> tuple[list[Any], list[Any]]:
    """A seeded shuffle, then the first `test_fraction` (at least one row) for test."""
    if len(rows) < 2:
        raise DataError(f"{len(rows)} row(s) cannot be split into train and eval; keep at least 2")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)  # noqa: S311 - a reproducible split, not a secret
    test_count = max(1, round(len(rows) * test_fraction))
    test = [rows[i] for i in sorted(order[:test_count])]
    train = [rows[i] for i in sorted(order[test_count:])]
    return train, test


def write_jsonl_atomically(files: dict[Path, list[Any]]) -> None:
    """Write every file to a hidden temporary sibling first; replace the targets only when all
    are written. A failure, Ctrl-C or SIGTERM leaves the targets as they were and no
    temporary file behind; the files get the permissions of any file the user creates. A
    temporary file that a killed writer (SIGKILL, a power cut) left is removed by the next
    write of the same target (see remove_stale_temporaries)."""
    staged: list[tuple[str, Path]] = []
    mode = 0o666 & ~_umask()
    try:
        with _sigterm_as_exit():
            for target, rows in files.items():
                target.parent.mkdir(parents=True, exist_ok=True)
                remove_stale_temporaries(target)
                handle, temporary = tempfile.mkstemp(
                    dir=target.parent, prefix=_temporary_prefix(target)
                )
                _hold(handle)
                staged.append((temporary, target))
                os.fchmod(handle, mode)
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
                    out.flush()
                    os.fsync(out.fileno())
            for temporary, target in staged:
                os.replace(temporary, target)
    except OSError as error:
        where = error.filename or next(iter(files))
        raise DataError(
            f"{where}: cannot write ({error.strerror or error}); nothing was written"
        ) from None
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.unlink(temporary)


def _temporary_prefix(target: Path) -> str:
    return f".{target.name}."


def _temporary_name(target: Path) -> re.Pattern[str]:
    """The names `tempfile.mkstemp` gives `target`'s temporary files: the prefix, then eight
    random letters, digits or underscores."""
    return re.compile(re.escape(_temporary_prefix(target)) + r"[a-z0-9_]{8}")


def _hold(handle: int) -> None:
    """Mark a temporary file as being written: an exclusive advisory lock (POSIX flock),
    held until the file is closed or the writer dies, so that another run's cleanup leaves
    it alone. Where flock is missing (Windows), an open file cannot be removed anyway."""
    if fcntl is not None:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove the temporary files that writers of `target` left in its folder and that no
    running writer holds: only names of the pattern this module gives them, only in that
    folder. Returns what was removed."""
    pattern = _temporary_name(target)
    removed = []
    for candidate in target.parent.iterdir():
        if pattern.fullmatch(candidate.name) is None or not candidate.is_file():
            continue
        try:
            if fcntl is None:  # Windows: a file a running writer holds open cannot be removed
                candidate.unlink()
            else:
                with candidate.open("rb") as file:
                    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    candidate.unlink()
        except OSError:  # held by a running writer (or already gone): not ours to remove
            continue
        removed.append(candidate)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM ends the process through Python's own exit, so `finally` blocks run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class Prepared:
    train: Path
    eval: Path
    train_rows: int
    eval_rows: int
    dropped: tuple[int, ...] = ()
    """Line (or row) numbers `--screen drop` left out."""


def prepare(
    *,
    out_dir: Path,
    seed: int,
    size: SampleSize | None = None,
    dataset: str = DEFAULT_DATASET,
    split: str = DEFAULT_SPLIT,
    from_path: Path | None = None,
    screen: Screener | None = None,
    screen_mode: str = "refuse",
    task: str = "chat",
) -> Prepared:
    """Load, validate, sample, screen, split and write. Raises DataError, writing nothing, on
    bad data. A local file is validated whole and kept whole unless `size` samples it; a hub
    dataset is streamed, HUB_SAMPLE of it unless `size` says otherwise. With `screen`, the
    rows kept are screened: `screen_mode` refuse raises FlaggedDataError (nothing written)
    when any is flagged, drop leaves those rows out and lists them in `Prepared.dropped`."""
    if screen_mode not in SCREEN_MODES:
        raise DataError(f"--screen {screen_mode!r}: must be one of {', '.join(SCREEN_MODES)}")
    if from_path is not None:
        numbered = _local_rows(from_path)
        source = str(from_path)
    else:
        numbered = _hub_rows(dataset, split, size or HUB_SAMPLE)
        source = f"{dataset}:{split}"
    pairs = task == "preference"
    checker = preference_format.row_problems if pairs else row_problems
    report = validate_rows(iter(numbered), Path(source), checker)
    if not report.ok:
        shown = "\n".join(f"  {source}:{line}: {reason}" for line, reason in report.problems[:20])
        more = len(report.problems) - 20
        raise DataError(
            f"{len(report.problems)} problem(s) in {source}; nothing was written:\n{shown}"
            + (f"\n  ... and {more} more" if more > 0 else "")
        )
    if from_path is not None and size is not None:
        numbered = numbered[: size.rows_of(len(numbered))]
    dropped: tuple[int, ...] = ()
    if screen is not None:
        flagged = screen(source, [(line, row) for line, row, _ in numbered])
        if flagged and screen_mode == "refuse":
            first = min(flagged)
            shown = ", ".join(f"{c} {s}" for c, s in flagged[first].items())
            raise FlaggedDataError(
                f"{len(flagged)} row(s) of {source} reach the screening threshold (the first, "
                f"{source}:{first}: {shown}); nothing was written: fix or remove them, or "
                "`--screen drop` to leave them out"
            )
        dropped = tuple(sorted(flagged))
        numbered = [item for item in numbered if item[0] not in flagged]
    rows = [
        preference_format.normalize(row) if pairs else {"messages": row["messages"]}
        for _, row, _ in numbered
    ]
    train, held_out = split_rows(rows, seed)
    names = prepared_files(task)
    paths = Prepared(out_dir / names[0], out_dir / names[1], len(train), len(held_out), dropped)
    write_jsonl_atomically({paths.train: train, paths.eval: held_out})
    return paths


def prepared_files(task: str) -> tuple[str, str]:
    """The training and held-out files `phi data prepare` writes for `task` (one of
    `preference_format.TASKS`)."""
    if task == "preference":
        return preference_format.TRAIN_FILE, preference_format.EVAL_FILE
    return TRAIN_FILE, EVAL_FILE


def default_source(task: str) -> tuple[str, str]:
    """The hub dataset and split `phi data prepare` samples for `task` by default."""
    if task == "preference":
        return preference_format.DEFAULT_DATASET, preference_format.DEFAULT_SPLIT
    return DEFAULT_DATASET, DEFAULT_SPLIT


def eval_file(path: Path) -> Path:
    """`path`; or, where it is the default name in a folder prepared before the rename, that
    folder's test_data.jsonl, with a warning."""
    old = path.with_name(OLD_EVAL_FILE)
    if path.name == EVAL_FILE and not path.exists() and old.is_file():
        renamed(str(old), str(path))
        return old
    return path


def iter_messages(path: Path) -> Iterator[list[dict[str, str]]]:
    """The `messages` of each valid row of a prepared file (JSON Lines, or Parquet)."""
    for _, row, error in read_rows(path):
        if error is None and isinstance(row, dict):
            yield row["messages"]
