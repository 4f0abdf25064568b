"""The flow's one tool: a thin Prompt flow adapter over finetune_phi's endpoint client.

No `from __future__ import annotations` here: Prompt flow reads the parameter types at run
time, and a string annotation would hand the tool the connection's name instead of it.
"""

from typing import Any

from promptflow.connections import CustomConnection
from promptflow.core import tool

from finetune_phi.endpoint_client import EndpointClient, history_messages


@tool  # type: ignore[untyped-decorator]
def call_endpoint(
    connection: CustomConnection,
    question: str,
    chat_history: list[Any] | None = None,
    system_prompt: str = "",
    temperature: float = 0.7,
    max_new_tokens: int = 256,
    timeout_seconds: float = 120.0,
) -> str:
    """Send the history and the question to the endpoint; return the assistant's answer.

    The connection is a custom connection with config `endpoint` (the scoring URI),
    optional config `api` (`score`, the default, or `chat-completions` for a serverless
    endpoint) and secret `key`; `phi flow connect` makes it from the stack outputs.
    """
    endpoint = connection.configs.get("endpoint")
    if not endpoint:
        raise ValueError("the connection has no 'endpoint' config: run `phi flow connect`")
    client = EndpointClient(
        endpoint,
        key=connection.secrets.get("key"),
        timeout=timeout_seconds,
        api=connection.configs.get("api") or "score",
    )
    parameters = {"temperature": temperature, "max_new_tokens": max_new_tokens}
    return str(client.chat(history_messages(chat_history, question, system_prompt), parameters))
