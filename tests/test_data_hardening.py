"""`phi data prepare` on the user's own files: every row kept and checked, every bad line named
as FILE:LINE, file-system failures as one line, and nothing half-written left behind."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finetune_phi.cli.main import main
from tests.support import SAMPLE

GOOD = json.dumps(
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
)


def prepare(*args: str) -> int:
    return main(["data", "prepare", *args])


def test_a_local_file_is_kept_whole_unless_sampled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert prepare("--from", str(SAMPLE), "--out", str(tmp_path / "all")) == 0
    assert "(36 rows)" in capsys.readouterr().out
    rows = sum(
        len((tmp_path / "all" / name).read_text().splitlines())
        for name in ("train_data.jsonl", "eval_data.jsonl")
    )
    assert rows == 45
    assert prepare("--from", str(SAMPLE), "--sample", "10", "--out", str(tmp_path / "ten")) == 0
    assert "(8 rows)" in capsys.readouterr().out


def test_every_row_is_validated_before_sampling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "chats.jsonl"
    source.write_text("\n".join([GOOD] * 20 + ['{"messages": []}']) + "\n")
    assert prepare("--from", str(source), "--sample", "5", "--out", str(tmp_path / "out")) == 2
    assert f"{source}:21: 'messages' must be a non-empty list" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"\xff\xfe{}", "not UTF-8: byte 0xff at column 1"),
        ('{"messages": "caf\u00e9"}'.encode("latin-1"), "not UTF-8: byte 0xe9 at column 18"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
        (
            b'{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "a"}]}',
            "messages[0].content is not valid Unicode (a lone surrogate)",
        ),
        (b'{"messages": [], "weight": NaN}', "NaN is not a number JSON allows"),
    ],
    ids=["bad-byte", "latin-1", "nesting", "surrogate", "nan"],
)
def test_each_bad_line_is_named_and_the_others_still_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: bytes, reason: str
) -> None:
    source = tmp_path / "chats.jsonl"
    source.write_bytes(GOOD.encode() + b"\n" + line + b"\n" + GOOD.encode() + b"\n")
    assert prepare("--from", str(source), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert f"{source}:2: {reason}" in err
    assert ":1:" not in err
    assert ":3:" not in err
    assert "Traceback" not in err


def test_a_utf16_file_is_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "chats.jsonl"
    source.write_text(GOOD + "\n", encoding="utf-16")
    assert prepare("--from", str(source), "--out", str(tmp_path / "out")) == 2
    assert f"{source}:1: the file is UTF-16; save it as UTF-8" in capsys.readouterr().err


def test_a_corrupt_parquet_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "chats.parquet"
    source.write_bytes(b"PAR1 not really parquet")
    assert prepare("--from", str(source), "--out", str(tmp_path / "out")) == 2
    assert f"--from {source}: not a readable Parquet file" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_output_folder_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert prepare("--from", str(SAMPLE), "--out", str(out)) == 2
    finally:
        out.chmod(0o700)
    assert "cannot write (Permission denied); nothing was written" in capsys.readouterr().err


def test_an_output_that_is_a_file_or_a_full_disk_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    assert prepare("--from", str(SAMPLE), "--out", str(tmp_path / "taken")) == 2
    assert "cannot write (" in capsys.readouterr().err
    if Path("/dev/full").exists():
        # Written through a folder whose files land on /dev/full: every write fails ENOSPC.
        out = tmp_path / "full"
        out.mkdir()
        (out / "train_data.jsonl").write_text("previous\n")
        code = subprocess.run(
            [sys.executable, "-c", FULL_DISK, str(out)], capture_output=True, text=True, check=False
        )
        assert code.returncode == 0, code.stderr
        assert "No space left on device" in code.stdout
        assert (out / "train_data.jsonl").read_text() == "previous\n"
        assert sorted(p.name for p in out.iterdir()) == ["train_data.jsonl"]


FULL_DISK = """
import os, sys, tempfile
from pathlib import Path
from finetune_phi.data import prepare
real = tempfile.mkstemp
def on_full_disk(dir=None, prefix=None, **kw):
    handle, name = real(dir=dir, prefix=prefix, **kw)
    os.dup2(os.open("/dev/full", os.O_WRONLY), handle)
    return handle, name
tempfile.mkstemp = on_full_disk
try:
    prepare.write_jsonl_atomically({Path(sys.argv[1]) / "train_data.jsonl": [{"a": 1}] * 10_000})
except prepare.DataError as error:
    print(error)
"""


def test_written_files_get_ordinary_permissions(tmp_path: Path) -> None:
    assert prepare("--from", str(SAMPLE), "--out", str(tmp_path)) == 0
    mask = os.umask(0)
    os.umask(mask)
    for name in ("train_data.jsonl", "eval_data.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask


SLOW_WRITE = """
import sys, time
from pathlib import Path
from finetune_phi.data.prepare import write_jsonl_atomically
class SlowRows(list):
    def __iter__(self):
        print("writing", flush=True)
        for row in range(100_000):
            time.sleep(0.001)
            yield {"row": row}
write_jsonl_atomically({Path(sys.argv[1]) / "train_data.jsonl": SlowRows()})
"""


def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "train_data.jsonl").write_text("previous\n")
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITE, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    assert any(p.name.startswith(".train_data.jsonl.") for p in tmp_path.iterdir())
    writer.send_signal(signal.SIGTERM)
    assert writer.wait(timeout=30) == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_data.jsonl"]
    assert (tmp_path / "train_data.jsonl").read_text() == "previous\n"


def validate(*args: str) -> int:
    return main(["data", "validate", *args])


@pytest.mark.parametrize(
    ("line", "key"),
    [
        (
            '{"messages": [{"role": "user", "content": "a"}], "messages": '
            '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}',
            "messages",
        ),
        (
            '{"messages": [{"role": "user", "content": "Hi"}, '
            '{"role": "assistant", "content": "a", "content": "b"}]}',
            "content",
        ),
    ],
    ids=["top-level", "nested"],
)
def test_a_key_given_twice_is_refused_by_validate_and_prepare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, key: str
) -> None:
    """json.loads keeps the last of two keys, another reader may keep the first: the line
    that validates must be the line that trains, so neither may pass."""
    source = tmp_path / "chats.jsonl"
    source.write_text(f"{GOOD}\n{line}\n")
    assert validate(str(source)) == 1
    assert f'{source}:2: duplicate key "{key}"' in capsys.readouterr().err
    assert prepare("--from", str(source), "--out", str(tmp_path / "out")) == 2
    assert f'{source}:2: duplicate key "{key}"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("chats.txt", "a .txt file; chat data must be a .jsonl or .parquet file"),
        ("chats", "a suffix-less file; chat data must be a .jsonl or .parquet file"),
        ("chats.csv", "CSV, which cannot hold a conversation's list of messages"),
    ],
)
def test_validate_and_prepare_accept_the_same_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, reason: str
) -> None:
    """What validate passes, prepare takes: one rule on names, one line of reason each."""
    source = tmp_path / name
    source.write_text(GOOD + "\n" + GOOD + "\n")
    assert validate(str(source)) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{source}: {reason}")
    assert prepare("--from", str(source), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"phi: error: --from {source}: {reason}")
    assert not (tmp_path / "out").exists()
    renamed = source.rename(tmp_path / "chats.jsonl")
    assert validate(str(renamed)) == 0
    assert prepare("--from", str(renamed), "--out", str(tmp_path / "out")) == 0


def write_parquet(path: Path, rows: list[object], row_group_size: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)


def test_validate_reads_parquet_row_by_row_as_prepare_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parquet that prepare takes, validate reads too: the same rules, bad rows by number
    across row groups, one row group in memory at a time; training still wants JSONL."""
    good = json.loads(GOOD)
    ends_with_user = {"messages": [{"role": "user", "content": "Hi"}]}
    rows = [good] * 5 + [ends_with_user] + [good] * 3
    source = tmp_path / "chats.parquet"
    write_parquet(source, rows, row_group_size=2)
    import pyarrow.parquet as pq

    groups_read: list[int] = []
    read_row_group = pq.ParquetFile.read_row_group

    def counted(self: pq.ParquetFile, index: int, *args: object, **kwargs: object) -> object:
        groups_read.append(index)
        return read_row_group(self, index, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
    assert validate(str(source)) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"{source}:6: the last message is 'user'; it must be 'assistant'"
    ]
    assert f"{source}: 9 rows, 1 problem(s)" in captured.out
    assert groups_read == [0, 1, 2, 3, 4]
    assert prepare("--from", str(source), "--out", str(tmp_path / "out")) == 2
    assert f"{source}:6: the last message is 'user'" in capsys.readouterr().err

    write_parquet(source, [good] * 4, row_group_size=3)
    assert validate(str(source)) == 0
    assert f"{source}: 4 rows, 0 problem(s)" in capsys.readouterr().out
    args = ["train", "--local", "--model", "unused", "--output-dir", str(tmp_path / "run")]
    assert main([*args, "--train-file", str(source)]) == 2
    err = capsys.readouterr().err
    assert f"--train-file {source}: Parquet; training reads chat JSONL" in err
    assert f"phi data prepare --from {source}" in err


def test_validate_names_a_broken_or_misnamed_parquet_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    misnamed = tmp_path / "rows.jsonl"
    write_parquet(misnamed, [json.loads(GOOD)] * 2, row_group_size=2)
    assert validate(str(broken), str(misnamed), str(SAMPLE)) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{broken}: not a readable Parquet file (")
    assert lines[1] == f"{misnamed}: Parquet named .jsonl; name it .parquet"
    assert f"{SAMPLE}: 45 rows, 0 problem(s)" in captured.out  # the others still read


def test_validate_without_pyarrow_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "chats.parquet"
    write_parquet(source, [json.loads(GOOD)] * 2, row_group_size=2)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow fails as if missing
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert validate(str(source)) == 2
    assert capsys.readouterr().err == (
        f"phi: error: {source}: reading Parquet needs the Python package 'pyarrow'; "
        "in the checkout, pip install '.[jobs]'\n"
    )


def test_the_next_prepare_removes_what_a_killed_one_left(tmp_path: Path) -> None:
    """SIGKILL gives no chance to clean up: the temporary file stays until the next run of
    prepare into that folder, which removes its own kind of leftovers and nothing else."""
    out = tmp_path / "out"
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITE, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "writing"
    writer.kill()
    assert writer.wait(timeout=30) == -signal.SIGKILL
    [left] = [p for p in out.iterdir() if p.name.startswith(".train_data.jsonl.")]
    others = [".train_data.jsonl.keep", "notes.txt", ".train_data.jsonl.abcdefgh.bak"]
    for name in others:
        (out / name).write_text("not prepare's\n")
    assert prepare("--from", str(SAMPLE), "--out", str(out)) == 0
    assert not left.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*others, "train_data.jsonl", "eval_data.jsonl"]
    )


HELD_WRITE = """
import sys, time
from pathlib import Path
from finetune_phi.data.prepare import write_jsonl_atomically
class Held(list):
    def __iter__(self):
        print("writing", flush=True)
        sys.stdin.readline()
        yield {"row": 1}
write_jsonl_atomically({Path(sys.argv[1]) / "train_data.jsonl": Held()})
"""


def test_a_running_writers_temporary_file_is_left_alone(tmp_path: Path) -> None:
    """Two prepares into one folder: the second never removes the first's file mid-write."""
    from finetune_phi.data.prepare import remove_stale_temporaries

    writer = subprocess.Popen(
        [sys.executable, "-c", HELD_WRITE, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "writing"
    assert remove_stale_temporaries(tmp_path / "train_data.jsonl") == []
    writer.stdin.write("go\n")
    writer.stdin.close()
    assert writer.wait(timeout=30) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_data.jsonl"]
