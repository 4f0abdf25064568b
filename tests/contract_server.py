"""A local endpoint that speaks the scoring contract and records what it was sent.

Replies can be scripted (status, headers, body) per request; without a script it answers
`{"output": "<n> messages; last: <last content>"}` and checks the bearer key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support import http_server, send_json

Reply = tuple[int, dict[str, str], Any]


@dataclass
class Recorded:
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Each request's JSON body, with its headers under "headers"."""
    script: list[Reply] = field(default_factory=list)
    """Replies to send first, in order; then the contract's answer."""
    key: str | None = None
    """When set, any other bearer key gets 401."""
    api: str = "score"
    """"score" answers the scoring contract; "chat-completions" a serverless endpoint's."""
    answer: Callable[[list[dict[str, str]]], str] | None = None
    """The answer's text from the messages (the scoring contract); default: an echo."""


def contract_answer(body: Any) -> str:
    messages = body["input_data"]["input_string"]
    return f"{len(messages)} messages; last: {messages[-1]['content']}"


def chat_completions_answer(body: Any) -> dict[str, Any]:
    """A whole `chat.completion`, every field OpenAI's API reference requires."""
    messages = body["messages"]
    text = f"{len(messages)} messages; last: {messages[-1]['content']}"
    return {
        "id": "chatcmpl-stand-in",
        "object": "chat.completion",
        "created": 1796428800,
        "model": body.get("model", "phi"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


@contextmanager
def contract_server(recorded: Recorded | None = None) -> Iterator[tuple[str, Recorded]]:
    state = recorded or Recorded()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            body = json.loads(raw)
            state.requests.append({**body, "headers": dict(self.headers)})
            if state.script:
                status, headers, reply = state.script.pop(0)
            elif (
                state.key is not None and self.headers.get("Authorization") != f"Bearer {state.key}"
            ):
                status, headers, reply = 401, {}, {"message": "Unauthorized"}
            elif state.api == "chat-completions":
                status, headers, reply = 200, {}, chat_completions_answer(body)
            elif state.answer is not None:
                messages = body["input_data"]["input_string"]
                status, headers, reply = 200, {}, {"output": state.answer(messages)}
            else:
                status, headers, reply = 200, {}, {"output": contract_answer(body)}
            send_json(self, status, headers, reply)

    with http_server(Handler) as url:
        yield f"{url}/score", state
