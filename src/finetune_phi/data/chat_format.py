"""The chat format the fine-tune trains on, and a validator that names every bad line.

A row is a JSON object with a `messages` list. Each message has a `role` (system, user or
assistant) and non-empty string `content`. A system message may only come first; there
is at least one user message; the conversation ends with an assistant turn. No content
holds a Phi chat-template marker such as `<|end|>` or `<|assistant|>`: the chat template
would read it as a turn of its own, and the model would learn from a forged conversation
(the training script refuses the tokenizer's own markers too).

A chat data file is JSON Lines (`.jsonl`, or `.json` holding JSON Lines), which training
reads, or Parquet (`.parquet`), which `phi data validate` and `phi data prepare --from` read
(prepare writes it out as JSONL). A key given twice in one JSON object is refused: readers
disagree on which one counts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune_phi.core.errors import UsageError

ROLES = ("system", "user", "assistant")
MARKER = re.compile(r"<\|[A-Za-z0-9_]+\|>")
"""Phi's chat-template markers: <|system|>, <|user|>, <|assistant|>, <|end|>, <|endoftext|>..."""
JSONL_SUFFIXES = (".jsonl", ".json")
"""What a JSON Lines chat file is named; training reads only these."""
PARQUET_SUFFIX = ".parquet"
SUFFIX_RULE = "must be a .jsonl or .parquet file (or .json holding JSON Lines)"
"""The one rule on names, shared by `phi data validate` and `phi data prepare --from`."""
JSONL_RULE = "must be a .jsonl file (or .json holding JSON Lines)"
"""The rule where training reads the file itself: JSON Lines only."""


class UnreadableFileError(UsageError):
    """A file that cannot be read as a whole (a broken Parquet file); the message begins
    with its path."""


def row_problems(row: Any) -> list[str]:
    """Every reason `row` is not a valid chat row; empty when it is."""
    if not isinstance(row, dict):
        return [f"expected a JSON object, got {type(row).__name__}"]
    if "messages" not in row and {"chosen", "rejected"} <= set(row):
        return [
            'a preference row (chosen, rejected), not a chat row ({"messages": [...]}): '
            "it is for --trainer dpo"
        ]
    return messages_problems(row.get("messages"), "messages")


def messages_problems(
    messages: Any, name: str, *, last: str = "assistant", needs_user: bool = True
) -> list[str]:
    """Every reason `messages` (the value of `name`) is not a conversation: roles, a system
    message first only, non-empty text without chat-template markers, a user message (when
    `needs_user`), and `last` as the last role."""
    if not isinstance(messages, list) or not messages:
        return [f"'{name}' must be a non-empty list"]
    problems = []
    for index, message in enumerate(messages):
        where = f"{name}[{index}]"
        if not isinstance(message, dict):
            problems.append(f"{where} must be an object with 'role' and 'content'")
            continue
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            problems.append(f"{where}.role is {role!r}; must be one of {', '.join(ROLES)}")
        elif role == "system" and index != 0:
            problems.append(f"{where} is a system message; only the first message may be one")
        if not isinstance(content, str) or not content.strip():
            problems.append(f"{where}.content must be a non-empty string")
        elif not _is_unicode(content):
            problems.append(f"{where}.content is not valid Unicode (a lone surrogate)")
        elif marker := MARKER.search(content):
            problems.append(
                f"{where}.content holds {marker.group(0)!r}, a chat-template marker: the "
                "model would learn a forged turn from it"
            )
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    if needs_user and "user" not in roles:
        problems.append(
            f"there is no user message in '{name}'"
            if name != "messages"
            else "there is no user message"
        )
    if roles and roles[-1] != last:
        problems.append(
            f"the last message is {roles[-1]!r}; it must be '{last}'"
            if name == "messages"
            else f"the last message of '{name}' is {roles[-1]!r}; it must be '{last}'"
        )
    return problems


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class FileReport:
    path: Path
    rows: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    """(line number, reason), one entry per reason."""

    @property
    def ok(self) -> bool:
        return not self.problems and self.rows > 0


def read_jsonl(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed row or None, reason or None) for each non-blank line. Each line
    is decoded on its own, so one bad line is reported as such and the others still read."""
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if number == 1 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                yield number, None, "the file is UTF-16; save it as UTF-8"
                return
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            yield (number, *parse_line(raw))


def parse_line(raw: bytes) -> tuple[Any, str | None]:
    """(row, None) or (None, reason); a blank line is (None, None)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"not UTF-8: byte 0x{raw[error.start]:02x} at column {error.start + 1}"
    if not line.strip():
        return None, None
    try:
        return json.loads(
            line, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys
        ), None
    except ValueError as error:
        if isinstance(error, json.JSONDecodeError):
            return None, f"not valid JSON: {error.msg} at column {error.colno}"
        return None, str(error)
    except RecursionError:
        return None, "JSON nested too deeply"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are distinct: with a key given twice, the validator and the
    trainer's reader could each take a different value."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {json.dumps(key, ensure_ascii=False)}")
        found[key] = value
    return found


def read_parquet(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(row number, row, None) for each row of a Parquet file, read one row group at a time
    so a large file is never held whole. UsageError, in one line, for a file pyarrow cannot
    read or without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise UsageError(
            f"{path}: reading Parquet needs the Python package 'pyarrow'; in the checkout, "
            "pip install '.[jobs]'"
        ) from None
    number = 0
    try:
        parquet = pq.ParquetFile(path)
        for group in range(parquet.num_row_groups):
            for row in parquet.read_row_group(group).to_pylist():
                number += 1
                yield number, row, None
    except pa.ArrowException as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        where = f" (at row {number + 1})" if number else ""
        raise UnreadableFileError(f"{path}: not a readable Parquet file{where} ({first})") from None
    except OSError as error:
        raise UnreadableFileError(f"{path}: cannot read it ({error.strerror or error})") from None


def read_rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """A chat data file's rows, numbered: Parquet's by row, JSON Lines' by line."""
    if path.suffix.lower() == PARQUET_SUFFIX:
        return read_parquet(path)
    return read_jsonl(path)


def validate_rows(
    rows: Iterable[tuple[int, Any, str | None]],
    path: Path,
    problems: Callable[[Any], list[str]] = row_problems,
) -> FileReport:
    """Every row checked by `problems` (chat rows by default)."""
    report = FileReport(path)
    for number, row, parse_error in rows:
        if row is None and parse_error is None:  # a blank line
            continue
        report.rows += 1
        reasons = [parse_error] if parse_error else problems(row)
        report.problems.extend((number, reason) for reason in reasons)
    if report.rows == 0:
        report.problems.append((0, "the file holds no rows"))
    return report


def validate_file(path: Path) -> FileReport:
    """Every row of a chat data file checked: JSON Lines, or Parquet by its suffix."""
    return validate_rows(read_rows(path), path)


ROW_SHAPES = {"chat": '{"messages": [...]}', "preference": '{"prompt", "chosen", "rejected"}'}
"""One row of each task's data, in words."""


def file_problem(path: Path, *, parquet: bool = False, task: str = "chat") -> str | None:
    """Why `path` is not a data file of `task` ("chat" or "preference") as a whole, before
    its rows are read: missing, a folder, a name outside SUFFIX_RULE (CSV with its own
    reason), a JSON array, or Parquet where JSON Lines is needed (unless `parquet`: then a
    .parquet file is read); None when its rows are worth reading."""
    prepare = "phi data prepare" + (" --task preference" if task == "preference" else "")
    if path.is_dir():
        return "a folder; give the JSONL file inside it"
    if not path.is_file():
        return f"no such file (make it with `{prepare} --out DIR`)"
    try:
        with path.open("rb") as file:
            head = file.read(4096)
    except OSError as error:
        return f"cannot read it ({error.strerror or error})"
    suffix = path.suffix.lower()
    convert = f"`{prepare} --from {path} --out DIR`"
    if head.startswith(b"PAR1") or (suffix == PARQUET_SUFFIX and not parquet):
        if not parquet:
            return f"Parquet; training reads {task} JSONL: convert it with {convert}"
        if suffix != PARQUET_SUFFIX:
            return f"Parquet named {suffix or 'without a suffix'}; name it .parquet"
        return None
    rule = SUFFIX_RULE if parquet else JSONL_RULE
    if suffix in (".csv", ".tsv"):
        return (
            f"CSV, which cannot hold a conversation's list of messages; {task} data {rule}, "
            f"one {ROW_SHAPES[task]} object per row"
        )
    if suffix not in (*JSONL_SUFFIXES, PARQUET_SUFFIX):
        return f"a {suffix or 'suffix-less'} file; {task} data {rule}"
    if suffix == PARQUET_SUFFIX:
        return None  # pyarrow says what is wrong with it
    if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"["):
        return f"a JSON array; {task} JSONL has one JSON object per line"
    return None


def require_chat_jsonl(path: Path, flag: str) -> FileReport:
    """The file's report when every line is a chat row; UsageError otherwise, naming the
    file's problem or its first bad lines as FILE:LINE: reason."""
    problem = file_problem(path)
    if problem is not None:
        raise UsageError(f"{flag} {path}: {problem}")
    report = validate_file(path)
    if not report.ok:
        shown = "\n".join(f"  {path}:{line}: {reason}" for line, reason in report.problems[:10])
        more = len(report.problems) - 10
        raise UsageError(
            f"{flag} {path} is not chat JSONL ({len(report.problems)} problem(s)):\n{shown}"
            + (
                f"\n  ... and {more} more (`phi data validate {path}` lists them)"
                if more > 0
                else ""
            )
        )
    return report
