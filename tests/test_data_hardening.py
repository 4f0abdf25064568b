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
