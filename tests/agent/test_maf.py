"""The chat on Microsoft Agent Framework (flow/maf.py), in its own environment, against a
local endpoint that speaks the scoring contract or chat-completions."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flow import maf
from flow.endpoint_client import EndpointClient
from tests.arm_server import arm_server
from tests.contract_server import Recorded, contract_server

KEY = "right-key-5c1d"
HISTORY = [
    {"inputs": {"question": "What is the capital of France?"}, "outputs": {"answer": "Paris."}}
]
QUESTION = "Which river flows through it?"


def run_maf(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **variables}
    return subprocess.run(
        [sys.executable, "-m", "flow.maf", *args], env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_history_becomes_messages_and_the_flows_parameters_are_sent() -> None:
    defaults = maf.FlowDefaults.read()
    with contract_server(Recorded(key=KEY)) as (url, recorded):
        text = asyncio.run(
            maf.answer(EndpointClient(url, key=KEY), maf.ChatRequest(QUESTION, HISTORY))
        )
    assert text == f"4 messages; last: {QUESTION}"
    [request] = recorded.requests
    messages = request["input_data"]["input_string"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == defaults.system_prompt
    assert request["input_data"]["parameters"] == {
        "temperature": defaults.temperature,
        "max_new_tokens": defaults.max_new_tokens,
    }
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"


def test_429_is_retried() -> None:
    recorded = Recorded(script=[(429, {"Retry-After": "0"}, {"message": "busy"})])
    with contract_server(recorded) as (url, seen):
        result = run_maf("--question", "Hi", "--json", PHI_ENDPOINT_URL=url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"answer": "2 messages; last: Hi"}
    assert len(seen.requests) == 2


def test_a_wrong_key_fails_clearly_without_showing_it() -> None:
    wrong = "wrong-key-9e7b"
    with contract_server(Recorded(key=KEY)) as (url, _):
        result = run_maf("--question", "Hi", PHI_ENDPOINT_URL=url, PHI_ENDPOINT_KEY=wrong)
    assert result.returncode == 1
    assert "rejected the key (HTTP 401)" in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_the_chat_completions_contract() -> None:
    with contract_server(Recorded(key=KEY, api="chat-completions")) as (url, seen):
        result = run_maf(
            "--question", QUESTION, "--chat-history", json.dumps(HISTORY),
            PHI_ENDPOINT_URL=url, PHI_ENDPOINT_KEY=KEY, PHI_ENDPOINT_API="chat-completions",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"4 messages; last: {QUESTION}"
    [request] = seen.requests
    assert request["max_tokens"] == maf.FlowDefaults.read().max_new_tokens
    assert [m["role"] for m in request["messages"]] == ["system", "user", "assistant", "user"]


def test_the_stacks_endpoint_with_its_key_fetched_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sub = "00000000-0000-0000-0000-000000000001"
    keys = (
        f"/subscriptions/{sub}/resourceGroups/rg-phi-dev/providers/Microsoft.MachineLearningServices"
        "/workspaces/mlw-phi-dev/onlineEndpoints/phi-dev-abc123/listKeys"
    )
    monkeypatch.setattr("jobs.cloud.credentials.arm_token_provider", lambda: lambda: "arm-token")
    with contract_server(Recorded(key=KEY)) as (url, seen), arm_server() as (arm, state):
        state.documents[keys] = {"primaryKey": KEY, "secondaryKey": "other"}
        outputs: dict[str, Any] = {
            "subscriptionId": sub, "resourceGroupName": "rg-phi-dev", "workspaceName": "mlw-phi-dev",
            "endpointName": "phi-dev-abc123", "scoringUri": url,
        }  # fmt: skip
        (tmp_path / "outputs.json").write_text(json.dumps(outputs))
        code = maf.main(
            ["--question", "Hi", "--outputs", str(tmp_path / "outputs.json"), "--arm-endpoint", arm]
        )
        calls = [(c.method, c.path, c.authorization) for c in state.calls]
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == "2 messages; last: Hi"
    assert calls == [("POST", keys, "Bearer arm-token")]
    assert seen.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_one_workflow_per_run_lets_runs_overlap() -> None:
    async def both(url: str) -> list[str]:
        client = EndpointClient(url)
        return list(await asyncio.gather(
            maf.answer(client, maf.ChatRequest("one")), maf.answer(client, maf.ChatRequest("two"))
        ))  # fmt: skip

    with contract_server() as (url, _):
        assert asyncio.run(both(url)) == ["2 messages; last: one", "2 messages; last: two"]


@pytest.mark.parametrize(
    ("args", "variables", "message"),
    [
        ([], {}, "no endpoint: set PHI_ENDPOINT_URL"),
        (["--chat-history", "{"], {"PHI_ENDPOINT_URL": "http://127.0.0.1:9/score"}, "--chat-history is not JSON"),
        ([], {"PHI_ENDPOINT_URL": "http://127.0.0.1:9/score", "PHI_ENDPOINT_API": "grpc"}, "PHI_ENDPOINT_API='grpc'"),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line_and_exit_2(
    args: list[str], variables: dict[str, str], message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in maf.ENDPOINT_VARIABLES}
    result = subprocess.run(
        [sys.executable, "-m", "flow.maf", "--question", "Hi", *args], env={**env, **variables},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
