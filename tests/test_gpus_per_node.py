"""One spelling for processes per node: `--gpus-per-node` on `phi train` and `phi finetune
submit`; `phi train --nproc-per-node` still works and says once what it is now."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from finetune_phi.cli import train as train_cli
from finetune_phi.cli.main import main
from finetune_phi.core import renames
from finetune_phi.data import SAMPLE

NOTE = f"phi: warning: --nproc-per-node is now --gpus-per-node; the old spelling goes in {renames.REMOVED_IN}"


def launched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, list[str]]:
    """`phi train --local ARGS`: its exit code and the command it would launch."""
    commands: list[list[str]] = []

    def record(command: list[str], env: Mapping[str, str] | None = None) -> int:
        commands.append(command)
        return 0

    monkeypatch.setattr(train_cli, "run_in_group", record)
    code = main(
        [
            "train",
            "--local",
            "--model",
            str(tmp_path),
            "--train-file",
            str(SAMPLE),
            "--output-dir",
            str(tmp_path / "out"),
            *args,
        ]
    )
    return code, commands[0] if commands else []


@pytest.mark.parametrize("spelling", ["--gpus-per-node", "--nproc-per-node"])
def test_both_spellings_launch_one_process_per_gpu(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spelling: str,
) -> None:
    code, command = launched(tmp_path, monkeypatch, spelling, "2", "--num_train_epochs", "1")
    assert code == 0
    assert command[1:4] == ["-m", "torch.distributed.run", "--nproc_per_node=2"]
    assert command[-2:] == ["--num_train_epochs", "1"]  # the old spelling is no TRL argument
    assert not [word for word in command if word.startswith("--nproc-per-node")]
    note = [] if spelling == "--gpus-per-node" else [NOTE]
    *said, tracking = capsys.readouterr().err.splitlines()
    assert said == note
    assert tracking.startswith("phi: metrics go to MLflow in ")


def test_the_old_spelling_counts_for_fsdp_and_errors_name_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, command = launched(tmp_path, monkeypatch, "--nproc-per-node", "1", "--fsdp")
    assert (code, command) == (2, [])
    assert capsys.readouterr().err.splitlines() == [
        NOTE,
        "phi: error: --fsdp shards the model over processes: give --gpus-per-node 2 or more",
    ]


@pytest.mark.parametrize("command", [["train"], ["finetune", "submit"]])
def test_help_shows_the_one_spelling(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert "--gpus-per-node GPUS_PER_NODE" in out
    assert "--nproc-per-node" not in out
