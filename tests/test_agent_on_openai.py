"""The Agent Framework chat (flow/agent/chat.py, in .venv-agent) asks a real `phi serve`, on
either engine, through the framework's own OpenAI chat client: with greedy decoding its
answer is the one the real `openai` client gets from the same server for the same request
(the flow's messages and token budget, from flow.dag.yaml)."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import openai
import pytest
import yaml

from finetune_phi.core.folders import AGENT_CHAT
from finetune_phi.endpoint_client import history_messages
from tests.support import AGENT_PYTHON, PROMPT_FLOW

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not AGENT_PYTHON.is_file(), reason="no Agent Framework environment: run `make venv-agent`"
    ),
]
HISTORY = [
    {"inputs": {"question": "What is the capital of France?"}, "outputs": {"answer": "Paris."}}
]
QUESTION = "Which river flows through it?"
CONNECTION = ("PHI_ENDPOINT_URL", "PHI_ENDPOINT_KEY", "PHI_ENDPOINT_API", "PHI_ENDPOINT_MODEL")


def dag_defaults() -> tuple[str, int]:
    """The call_endpoint node's system prompt and max_new_tokens, as the script reads them."""
    flow = yaml.safe_load((PROMPT_FLOW / "flow.dag.yaml").read_text(encoding="utf-8"))
    node = next(n for n in flow["nodes"] if n["name"] == "call_endpoint")["inputs"]
    return str(node["system_prompt"]), int(node["max_new_tokens"])


def agent_answer(endpoint: str) -> str:
    """The script's greedy answer, the endpoint named as `phi chat --agent` may name it; the
    contract left to its default (chat-completions)."""
    env = {k: v for k, v in os.environ.items() if k not in CONNECTION}
    result = subprocess.run(
        [
            *(str(AGENT_PYTHON), str(AGENT_CHAT), "--question", QUESTION),
            *("--chat-history", json.dumps(HISTORY), "--temperature", "0", "--json"),
        ],
        env={**env, "PHI_ENDPOINT_URL": endpoint},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["answer"])


def openai_answer(url: str) -> str:
    """The real `openai` client's greedy answer to the flow's request."""
    system_prompt, max_new_tokens = dag_defaults()
    messages: Any = history_messages(HISTORY, QUESTION, system_prompt)
    with openai.OpenAI(
        base_url=f"{url}/v1", api_key="unused", timeout=300, max_retries=0
    ) as client:
        answer = client.chat.completions.create(
            model="phi", messages=messages, temperature=0, max_tokens=max_new_tokens
        )
    content = answer.choices[0].message.content
    assert content
    return content.strip()


def test_the_agent_asks_phi_serve_on_transformers_as_the_openai_client_does(
    scoring_server: str,
) -> None:
    expected = openai_answer(scoring_server)
    assert agent_answer(scoring_server) == expected
    assert agent_answer(f"{scoring_server}/v1/chat/completions") == expected


@pytest.mark.xdist_group("vllm")
def test_the_agent_asks_phi_serve_on_vllm_as_the_openai_client_does(vllm_server: str) -> None:
    expected = openai_answer(vllm_server)
    assert agent_answer(f"{vllm_server}/v1") == expected
    assert agent_answer(f"{vllm_server}/v1/chat/completions") == expected
