"""The chat on Microsoft Agent Framework (flow/agent/chat.py), in its own environment, against a
local endpoint that speaks the scoring contract or chat-completions."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from finetune_phi.core.folders import AGENT_CHAT
from finetune_phi.endpoint_client import EndpointClient
from tests.contract_server import Recorded, contract_server


def load_chat() -> Any:
    """flow/agent/chat.py, a script of its folder, as a module."""
    spec = importlib.util.spec_from_file_location("agent_chat", AGENT_CHAT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chat = load_chat()
KEY = "right-key-5c1d"
HISTORY = [
    {"inputs": {"question": "What is the capital of France?"}, "outputs": {"answer": "Paris."}}
]
QUESTION = "Which river flows through it?"


def run_chat(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **variables}
    return subprocess.run(
        [sys.executable, str(AGENT_CHAT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_history_becomes_messages_and_the_flows_parameters_are_sent() -> None:
    defaults = chat.FlowDefaults.read()
    with contract_server(Recorded(key=KEY)) as (url, recorded):
        text = asyncio.run(
            chat.answer(EndpointClient(url, key=KEY), chat.ChatRequest(QUESTION, HISTORY))
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
        result = run_chat(
            "--question", "Hi", "--json", PHI_ENDPOINT_URL=url, PHI_ENDPOINT_API="score"
        )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"answer": "2 messages; last: Hi"}
    assert len(seen.requests) == 2


def test_a_wrong_key_fails_clearly_without_showing_it() -> None:
    wrong = "wrong-key-9e7b"
    with contract_server(Recorded(key=KEY)) as (url, _):
        result = run_chat("--question", "Hi", PHI_ENDPOINT_URL=url, PHI_ENDPOINT_KEY=wrong)
    assert result.returncode == 1
    assert "rejected the key (HTTP 401)" in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_the_chat_completions_contract() -> None:
    with contract_server(Recorded(key=KEY, api="chat-completions")) as (url, seen):
        result = run_chat(
            "--question",
            QUESTION,
            "--chat-history",
            json.dumps(HISTORY),
            PHI_ENDPOINT_URL=url,
            PHI_ENDPOINT_KEY=KEY,
            PHI_ENDPOINT_API="chat-completions",
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"4 messages; last: {QUESTION}"
    [request] = seen.requests
    # What the framework's OpenAI client sends, every field one our server takes.
    assert set(request) - {"headers"} == {
        *("model", "messages", "max_completion_tokens", "temperature", "stream")
    }
    assert request["model"] == "phi"
    assert request["max_completion_tokens"] == chat.FlowDefaults.read().max_new_tokens
    assert [m["role"] for m in request["messages"]] == ["system", "user", "assistant", "user"]


def test_one_workflow_per_run_lets_runs_overlap() -> None:
    async def both(url: str) -> list[str]:
        client = EndpointClient(url)
        return list(
            await asyncio.gather(
                chat.answer(client, chat.ChatRequest("one")),
                chat.answer(client, chat.ChatRequest("two")),
            )
        )

    with contract_server() as (url, _):
        assert asyncio.run(both(url)) == ["2 messages; last: one", "2 messages; last: two"]


@pytest.mark.parametrize(
    ("args", "variables", "message"),
    [
        ([], {}, "no endpoint: set PHI_ENDPOINT_URL"),
        (
            ["--chat-history", "{"],
            {"PHI_ENDPOINT_URL": "http://127.0.0.1:9/score"},
            "--chat-history is not JSON",
        ),
        (
            [],
            {"PHI_ENDPOINT_URL": "http://127.0.0.1:9/score", "PHI_ENDPOINT_API": "grpc"},
            "PHI_ENDPOINT_API='grpc'",
        ),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    args: list[str], variables: dict[str, str], message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in chat.ENDPOINT_VARIABLES}
    result = subprocess.run(
        [sys.executable, str(AGENT_CHAT), "--question", "Hi", *args],
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_old_module_name_still_answers_and_names_the_new_one() -> None:
    with contract_server(Recorded(api="chat-completions")) as (url, _):
        result = subprocess.run(
            [sys.executable, "-m", "flow.maf", "--question", "Hi"],
            cwd=AGENT_CHAT.parents[2],
            env={**os.environ, "PHI_ENDPOINT_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2 messages; last: Hi"
    assert "`python -m flow.maf` is now `phi chat --agent`" in result.stderr


def test_on_chat_completions_a_redirect_is_reported_never_followed() -> None:
    recorded = Recorded(
        key=KEY, api="chat-completions", script=[(302, {"Location": "http://elsewhere/"}, {})]
    )
    with contract_server(recorded) as (url, seen):
        result = run_chat("--question", "Hi", PHI_ENDPOINT_URL=url, PHI_ENDPOINT_KEY=KEY)
    assert result.returncode == 1
    assert "redirect (HTTP 302) to http://elsewhere/; not followed" in result.stderr
    assert len(seen.requests) == 1
    assert KEY not in result.stdout + result.stderr


def test_on_chat_completions_a_wrong_key_is_one_line_without_the_key() -> None:
    wrong = "wrong-key-1d2e"
    with contract_server(Recorded(key=KEY, api="chat-completions")) as (url, seen):
        result = run_chat("--question", "Hi", PHI_ENDPOINT_URL=url, PHI_ENDPOINT_KEY=wrong)
    assert result.returncode == 1
    assert "rejected the key (HTTP 401)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert wrong not in result.stdout + result.stderr
    headers = {name.lower(): value for name, value in seen.requests[0]["headers"].items()}
    assert headers["authorization"] == f"Bearer {wrong}"


def test_on_chat_completions_one_deadline_holds_against_a_silent_server() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        started = time.monotonic()
        result = run_chat("--question", "Hi", "--timeout", "2", PHI_ENDPOINT_URL=url)
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "no answer within 2 s" in result.stderr
    assert elapsed < 60  # the process start included; without the deadline it waits 600 s
