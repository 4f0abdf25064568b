"""Prompt flow and its successor give the same chat: the same request to the endpoint, and
with greedy decoding on the fine-tuned model, the same answer. The Agent Framework flow runs
in its own environment (.venv-agent), driven from here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from finetune_phi.core.folders import AGENT_CHAT
from tests.contract_server import Recorded, contract_server
from tests.support import AGENT_PYTHON, PHI, answer_of, connect, flow_test, flow_test_command

pytestmark = pytest.mark.skipif(
    not AGENT_PYTHON.is_file(), reason="no Agent Framework environment: run `make venv-agent`"
)
KEY = "parity-key-77e1"
HISTORY = [
    {"inputs": {"question": "What is the capital of France?"}, "outputs": {"answer": "Paris."}}
]
QUESTION = "Which river flows through it?"


def agent_flow(endpoint: str, key: str, *args: str) -> str:
    env = {
        **os.environ,
        "PHI_ENDPOINT_URL": endpoint,
        "PHI_ENDPOINT_KEY": key,
        "PHI_ENDPOINT_API": "score",
    }
    result = subprocess.run(
        [
            str(AGENT_PYTHON),
            str(AGENT_CHAT),
            "--question",
            QUESTION,
            "--chat-history",
            json.dumps(HISTORY),
            "--json",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["answer"])


def body(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "headers"}


def test_both_flows_send_the_same_request(pf_env: dict[str, str]) -> None:
    with contract_server(Recorded(key=KEY)) as (endpoint, recorded):
        connect(endpoint, KEY, pf_env)
        prompt_flow = flow_test(pf_env, QUESTION, HISTORY)
        agent = agent_flow(endpoint, KEY)
    assert prompt_flow.returncode == 0, prompt_flow.stderr
    assert answer_of(prompt_flow) == agent
    first, second = recorded.requests
    assert body(first) == body(second)
    assert (
        first["headers"]["Authorization"] == second["headers"]["Authorization"] == f"Bearer {KEY}"
    )


def test_greedy_answers_of_the_fine_tuned_model_are_identical(
    scoring_server: str, pf_env: dict[str, str], tmp_path: Path
) -> None:
    endpoint = f"{scoring_server}/score"
    connect(endpoint, "local", pf_env)
    prompt_flow = subprocess.run(
        [*flow_test_command(pf_env, QUESTION, HISTORY), "temperature=0"],
        env=pf_env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert prompt_flow.returncode == 0, prompt_flow.stderr
    agent = agent_flow(endpoint, "local", "--temperature", "0")
    assert agent.strip()
    assert answer_of(prompt_flow) == agent


def test_phi_chat_asks_through_the_agent_framework() -> None:
    """`phi chat --agent` hands the endpoint to the Agent Framework chat, which sends the
    flow's request (its system prompt and token budget) and prints the answer."""
    with contract_server() as (endpoint, recorded):
        result = subprocess.run(
            [*PHI, "chat", "--agent", "--url", endpoint, QUESTION],
            env={**os.environ, "PHI_AGENT_PYTHON": str(AGENT_PYTHON)},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"2 messages; last: {QUESTION}"
    [request] = recorded.requests
    assert request["input_data"]["input_string"][0]["role"] == "system"
    assert set(request["input_data"]["parameters"]) == {"temperature", "max_new_tokens"}


def test_phi_chat_without_the_agent_environment_says_how_to_make_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [*PHI, "chat", "--agent", "--url", "http://127.0.0.1:9/score", QUESTION],
        env={**os.environ, "PHI_AGENT_PYTHON": str(tmp_path / "no-python")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "phi: error: no Agent Framework environment: run `make venv-agent` in the checkout, "
        "or set $PHI_AGENT_PYTHON to its Python\n"
    )
