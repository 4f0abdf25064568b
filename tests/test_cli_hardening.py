"""Misspellings, missing credentials and a missing hub: each a clear line before anything is
sent, where they once passed through, submitted, or ended in a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from finetune_phi.cli.main import main
from finetune_phi.core.errors import UsageError
from tests.support import (
    ACCEPTED_RISK,
    BIN,
    EXAMPLE_OUTPUTS,
    PHI,
    SAMPLE,
    assert_one_sign_in_line,
    no_process_mentions,
    submit_workdir,
    without_azure_sign_in,
)

SUBMIT = ["finetune", "submit", "--outputs", "outputs.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--dryrun"],
            "--dryrun: neither an option of phi nor a TRL/Trainer argument; did you mean --dry-run?",
        ),
        (["--dry_run"], "did you mean --dry-run?"),
        (
            ["--num_epochs", "3"],
            "--num_epochs: neither an option of phi nor a TRL/Trainer argument; did you mean --num_train_epochs?",
        ),
        (
            ["--num_train_epochs", "three"],
            "TRL arguments: argument --num_train_epochs/--num-train-epochs: invalid float value: 'three'",
        ),
    ],
)
def test_a_misspelt_option_never_reaches_a_job(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    submit_workdir(tmp_path, monkeypatch, EXAMPLE_OUTPUTS)

    def no_client(*_: object) -> None:
        raise AssertionError("nothing may be sent")

    monkeypatch.setattr("finetune_phi.core.stack_outputs.Workspace.client", no_client)
    assert main([*SUBMIT, *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_a_valid_trl_argument_still_passes_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    submit_workdir(tmp_path, monkeypatch, EXAMPLE_OUTPUTS)
    assert (
        main([*SUBMIT, "--dry-run", "--num_train_epochs", "2", "--lr_scheduler_type=linear"]) == 0
    )
    printed = " ".join(capsys.readouterr().out.split())  # YAML folds the long command
    assert "--num_train_epochs 2 --lr_scheduler_type=linear" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deplyo"], "invalid choice: 'deplyo'"),
        (["deploy", "--dryrun"], "unrecognized argument --dryrun; did you mean --dry-run?"),
        (["deploy", "--dry"], "unrecognized argument --dry; did you mean --dry-run?"),
        (["data", "prepair"], "did you mean prepare?"),
    ],
)
def test_misspelt_commands_and_options_name_the_closest(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_misspelt_command_suggests_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["deplyo"])
    assert "did you mean deploy?" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["deploy", "--outputs", "outputs.json", "--job", "j1", "--no-verify", *ACCEPTED_RISK],
        ["chat", "--outputs", "outputs.json", "Hi"],
        ["flow", "connect", "--outputs", "outputs.json"],
        ["finetune", "submit", "--outputs", "outputs.json", "--no-stream"],
    ],
    ids=lambda c: c[0],
)
def test_without_credentials_one_line_says_how_to_sign_in(
    tmp_path: Path, command: list[str], no_managed_identity: str
) -> None:
    outputs = {**EXAMPLE_OUTPUTS, "scoringUri": "https://127.0.0.1:9/score"}
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    subprocess.run(
        [str(BIN / "phi"), "data", "prepare", "--from", str(SAMPLE), "--out", "data"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [str(BIN / "phi"), *command],
        cwd=tmp_path,
        env=without_azure_sign_in(tmp_path, no_managed_identity),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert_one_sign_in_line(result)


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["data", "prepare", "--out", "data"], "--dataset HuggingFaceH4/ultrachat_200k"),
        (
            ["data", "validate", str(SAMPLE), "--tokenizer", "microsoft/Phi-3.5-mini-instruct"],
            "--tokenizer",
        ),
        (
            [
                "train",
                "--local",
                "--model",
                "microsoft/Phi-3.5-mini-instruct",
                "--train-file",
                str(SAMPLE),
                "--output-dir",
                "out",
            ],
            "--model",
        ),
    ],
    ids=["prepare", "validate", "train"],
)
def test_an_unreachable_hub_fails_fast_naming_the_offline_way(
    tmp_path: Path, command: list[str], flag: str, no_managed_identity: str
) -> None:
    env = {
        **without_azure_sign_in(tmp_path, no_managed_identity),
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    del env["HF_HUB_OFFLINE"]
    result = subprocess.run(
        [sys.executable, "-m", "finetune_phi.cli", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr  # out of reach: run time, as Azure
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"phi: error: {flag}")
    assert "cannot reach the Hugging Face hub at 127.0.0.1:9" in last
    assert "HF_HUB_OFFLINE=1" in last
    assert "Traceback" not in result.stderr


def test_offline_without_a_cached_dataset_says_what_to_use(
    tmp_path: Path, no_managed_identity: str
) -> None:
    env = {**without_azure_sign_in(tmp_path, no_managed_identity), "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-m", "finetune_phi.cli", "data", "prepare", "--out", "data"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "not available" in result.stderr
    assert "--from FILE.jsonl" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # it runs the rehearsal up to its training
@pytest.mark.parametrize(
    ("signal_number", "code", "what"), [(2, 130, "Ctrl-C"), (15, 143, "SIGTERM")]
)
def test_an_interrupted_command_says_so_in_one_line_and_stops_what_it_started(
    tmp_path: Path, signal_number: int, code: int, what: str
) -> None:
    """Ctrl-C (or SIGTERM) in the middle of the rehearsal's training: one line, the
    documented exit code, the training process stopped with it."""
    work = tmp_path / "work"
    process = subprocess.Popen(
        [*PHI, "rehearse", "--work-dir", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    shown = []
    for line in process.stdout:
        shown.append(line)
        if line.startswith("[3/"):  # the training stage has begun
            break
    training = f"--output-dir {work / 'out'}"
    deadline = time.monotonic() + 60
    while no_process_mentions(training) and time.monotonic() < deadline:
        time.sleep(0.1)  # until its training process runs
    seen = not no_process_mentions(training)
    assert seen, f"the training process was not seen running; phi printed: {''.join(shown)}"
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines() == [
        f"phi: interrupted ({what}): stopped; what was written before is kept"
    ]
    assert no_process_mentions(str(work))


def snapshot(folder: Path) -> list[tuple[str, bytes]]:
    """Every path under `folder` with its bytes, less the lock files a command may leave."""
    return sorted(
        (str(path), path.read_bytes() if path.is_file() else b"")
        for path in folder.rglob("*")
        if path.suffix != ".lock"
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda phi: (phi / "state.json").mkdir(parents=True),
            "{phi}/state.json: phi cannot keep its records there (it is a folder; phi keeps a "
            "file there): move it aside, or set PHI_STATE_DIR to another folder",
        ),
        (
            lambda phi: phi.write_text("not a folder"),
            "{phi}: phi cannot keep its records there (it, or a folder above it, is a file; "
            "phi keeps its records in a folder there): move it aside, or set PHI_STATE_DIR to "
            "another folder",
        ),
        (
            lambda phi: (phi.mkdir(), (phi / "state.json").write_text('{"ws": [')),
            "{phi}/state.json is not valid JSON: fix it, or delete it to forget the recorded "
            "jobs and endpoints (pass --job to phi deploy then)",
        ),
    ],
    ids=["state-file-is-a-folder", "state-folder-is-a-file", "corrupt-state-file"],
)
def test_an_unusable_state_file_is_one_line_and_is_never_overwritten(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], object],
    message: str,
) -> None:
    """`phi deploy` reads the last job from .phi/state.json: a folder there (or a file where
    .phi belongs, or broken JSON) is named with what to do, and no command writes over it."""
    from finetune_phi.core import state

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PHI_STATE_DIR", raising=False)
    (tmp_path / "outputs.json").write_text(json.dumps(EXAMPLE_OUTPUTS))
    phi = Path(".phi")
    make(phi)
    before = snapshot(tmp_path)
    assert main(["deploy", "--outputs", "outputs.json", "--dry-run"]) == 2
    assert capsys.readouterr().err == f"phi: error: {message.format(phi=phi)}\n"
    with pytest.raises(UsageError) as caught:
        state.record("ws", state.LAST_FINETUNE_JOB, "job-1")
    assert str(caught.value) == message.format(phi=phi)
    after = snapshot(tmp_path)
    assert after == before


def test_a_state_entry_that_is_not_an_object_is_named_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune_phi.core import state

    monkeypatch.setenv("PHI_STATE_DIR", str(tmp_path))
    (tmp_path / "state.json").write_text('{"ws": ["hand-edited"]}')
    with pytest.raises(UsageError, match=r'state.json: the entry "ws" must be a JSON object'):
        state.record("ws", state.LAST_FINETUNE_JOB, "job-1")
    assert (tmp_path / "state.json").read_text() == '{"ws": ["hand-edited"]}'


@pytest.mark.parametrize(
    ("args", "usage", "commands"),
    [
        ([], "usage: phi [-h] [--version] [--verbose] COMMAND ...", ["data", "deploy", "rehearse"]),
        (["data"], "usage: phi data [-h] COMMAND ...", ["prepare", "validate"]),
        (["finetune"], "usage: phi finetune [-h] COMMAND ...", ["submit"]),
        (["flow"], "usage: phi flow [-h] COMMAND ...", ["connect"]),
    ],
    ids=["phi", "data", "finetune", "flow"],
)
def test_a_missing_command_shows_the_help_and_exits_2(
    args: list[str], usage: str, commands: list[str]
) -> None:
    """`phi` alone printed "error: the following arguments are required: COMMAND": now the
    help of that level, on stdout, with argparse's exit code for a missing command."""
    result = subprocess.run([*PHI, *args], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(usage)
    for name in commands:
        assert f"    {name} " in result.stdout or f"    {name}\n" in result.stdout, name
    assert "required" not in result.stdout


@pytest.mark.parametrize(
    ("args", "code"), [(["--help"], 0), (["data", "validate", str(SAMPLE)], 141)]
)
def test_a_reader_that_leaves_early_ends_phi_quietly(args: list[str], code: int) -> None:
    """`phi ... | head -1`: the pipe's reader is gone before phi writes; no traceback, and
    no "Exception ignored" from Python at exit."""
    process = subprocess.Popen(
        [*PHI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code
    assert stderr == ""
