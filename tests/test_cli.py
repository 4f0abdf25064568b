"""`phi`: every subcommand answers --help; the outputs come from the stack, not by hand."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from jobs import stack_outputs
from jobs.cli.main import build_parser, main


def subcommand_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append((*prefix, name))
                paths.extend(subcommand_paths(sub, (*prefix, name)))
    return paths


PATHS = subcommand_paths(build_parser())


def test_the_subcommands_are_the_ones_documented() -> None:
    assert {" ".join(p) for p in PATHS} >= {
        "data prepare",
        "data validate",
        "train",
        "finetune submit",
    }


@pytest.mark.parametrize("path", PATHS, ids=" ".join)
def test_every_subcommand_has_help(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    assert f"phi {' '.join(path)}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"), [("{", "not JSON"), ("[]", "expected a JSON object")]
)
def test_outputs_file_errors_are_clear(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(content)
    with pytest.raises(stack_outputs.OutputsError, match=message):
        stack_outputs.from_file(path)


def test_environment_variable_names_follow_the_outputs() -> None:
    assert stack_outputs.env_name("workspaceName") == "FINETUNE_PHI_WORKSPACE_NAME"
    outputs = stack_outputs.from_environment(
        {"FINETUNE_PHI_SCORING_URI": "https://x/score", "OTHER": "y"}
    )
    assert dict(outputs.values) == {"scoringUri": "https://x/score"}


def test_stack_needs_the_pulumi_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(stack_outputs.OutputsError, match="--stack needs the Pulumi CLI"):
        stack_outputs.from_stack("dev")


def test_an_outputs_file_is_read_as_pulumi_prints_it(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"workspaceName": "mlw-phi-dev", "cpuComputeName": None}))
    outputs = stack_outputs.read(None, path)
    assert outputs.require("workspaceName") == {"workspaceName": "mlw-phi-dev"}
    with pytest.raises(
        stack_outputs.OutputsError,
        match=r"lack cpuComputeName \(or \$FINETUNE_PHI_CPU_COMPUTE_NAME\)",
    ):
        outputs.require("cpuComputeName")


def test_a_missing_extra_is_named_with_the_install_command() -> None:
    from jobs.cli.main import missing_package

    error = missing_package(
        ModuleNotFoundError("No module named 'promptflow'", name="promptflow.client")
    )
    assert str(error) == (
        "the Python package 'promptflow' is not installed: pip install 'finetune-phi[flow]' "
        "(or `make venv` in a checkout)"
    )
    assert error.exit_code == 2


def test_usage_errors_and_run_time_failures_have_their_own_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from jobs.errors import PhiError, UsageError

    assert UsageError.exit_code == 2
    assert PhiError.exit_code == 1
    # a usage error: nothing is sent
    assert main(["chat", "--local", "http://127.0.0.1:9", "--stack", "dev", "Hi"]) == 2
    assert capsys.readouterr().err.startswith("phi: error: --local talks to a local server")
    # a run-time failure: nothing listens on the discard port
    assert main(["chat", "--local", "http://127.0.0.1:9", "Hi"]) == 1
    assert capsys.readouterr().err.startswith("phi: error: cannot reach http://127.0.0.1:9/score")
