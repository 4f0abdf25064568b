"""`phi`: every subcommand answers --help; the outputs come from the stack, not by hand."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from finetune_phi.cli.main import build_parser, main
from finetune_phi.core import stack_outputs


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
    assert stack_outputs.env_name("workspaceName") == "PHI_WORKSPACE_NAME"
    outputs = stack_outputs.from_environment({"PHI_SCORING_URI": "https://x/score", "OTHER": "y"})
    assert dict(outputs.values) == {"scoringUri": "https://x/score"}


def test_the_old_variable_prefix_still_works_and_names_the_new_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs = stack_outputs.from_environment(
        {"FINETUNE_PHI_SCORING_URI": "https://old/score", "PHI_WORKSPACE_NAME": "mlw-phi-dev"}
    )
    assert dict(outputs.values) == {
        "scoringUri": "https://old/score",
        "workspaceName": "mlw-phi-dev",
    }
    assert capsys.readouterr().err == (
        "phi: warning: $FINETUNE_PHI_SCORING_URI is now $PHI_SCORING_URI; "
        "the old spelling goes in 0.3\n"
    )
    # the new name wins, silently, when both are set
    both = {"FINETUNE_PHI_SCORING_URI": "https://old/score", "PHI_SCORING_URI": "https://new"}
    assert stack_outputs.from_environment(both).values["scoringUri"] == "https://new"


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
        match=r"lack cpuComputeName \(or \$PHI_CPU_COMPUTE_NAME\)",
    ):
        outputs.require("cpuComputeName")


def test_a_missing_extra_is_named_with_the_install_command() -> None:
    from finetune_phi.cli.main import missing_package

    error = missing_package(
        ModuleNotFoundError("No module named 'promptflow'", name="promptflow.client")
    )
    assert str(error) == (
        "the Python package 'promptflow' is not installed; in the checkout, "
        "pip install '.[flow]' (or `make venv` for every stage)"
    )
    assert error.exit_code == 2


def test_usage_errors_and_run_time_failures_have_their_own_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from finetune_phi.core.errors import PhiError, UsageError

    assert UsageError.exit_code == 2
    assert PhiError.exit_code == 1
    # a usage error: nothing is sent
    assert main(["chat", "--url", "http://127.0.0.1:9", "--stack", "dev", "Hi"]) == 2
    assert capsys.readouterr().err.startswith("phi: error: --url talks to that server")
    # a run-time failure: nothing listens on the discard port
    assert main(["chat", "--url", "http://127.0.0.1:9", "Hi"]) == 1
    assert capsys.readouterr().err.startswith(
        "phi: error: cannot reach http://127.0.0.1:9/v1/chat/completions"
    )


def test_chat_local_is_now_url_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    # the old spelling still reaches the server it names (none listens there: exit 1)
    assert main(["chat", "--local", "http://127.0.0.1:9", "Hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "phi: warning: phi chat --local URL is now --url URL; the old spelling goes in 0.3\n"
    )
    assert "127.0.0.1:9" in err


def test_chat_url_sends_the_key_from_the_environment_and_never_prints_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.contract_server import Recorded, contract_server

    secret = "url-key-7f3a9c"
    monkeypatch.setenv("PHI_ENDPOINT_KEY", secret)
    with contract_server(Recorded(key=secret)) as (url, recorded):
        assert main(["chat", "--url", url, "Hi"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "1 messages; last: Hi\n"
    assert recorded.requests[0]["headers"]["Authorization"] == f"Bearer {secret}"
    assert secret not in captured.out + captured.err
    # without it, the server that wants a key refuses: one line, and still no key shown
    monkeypatch.delenv("PHI_ENDPOINT_KEY")
    with contract_server(Recorded(key=secret)) as (url, recorded):
        assert main(["chat", "--url", url, "Hi"]) == 1
    captured = capsys.readouterr()
    assert "Authorization" not in recorded.requests[0]["headers"]
    assert "(HTTP 401)" in captured.err
    assert secret not in captured.out + captured.err


def test_chat_with_no_source_names_the_options_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    for name in list(os.environ):
        if name.startswith((stack_outputs.ENV_PREFIX, stack_outputs.OLD_ENV_PREFIX)):
            monkeypatch.delenv(name)
    assert main(["chat", "Hi"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "phi: error: no endpoint to ask: pass --stack, --outputs or --url\n"
    assert "PHI_" not in captured.err
    assert captured.out == ""
