"""OpenAI's chat-completions API, as both serving engines speak it (`server.py`): the request
checked against the same limits as the scoring contract (`contract.py`), and the answers and
errors in OpenAI's own shapes.

    POST /v1/chat/completions
    {"model": "phi", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64,
     "temperature": 0, "top_p": 1, "stop": ["\\n\\n"], "seed": 7, "n": 1,
     "stream": false, "stream_options": {"include_usage": true}}

`model` may be left out; when given it must be the served model's name (404 otherwise, as
OpenAI answers). Every other field is refused with the list of known ones (a misspelt
option is an error, never ignored). Limits, checked before any tokenizing or generation:
the scoring contract's body size, message count, characters per message, finite numbers
and integer digits; `max_tokens` 1-MAX_NEW_TOKENS (default DEFAULT_MAX_TOKENS); `n`
1-MAX_CHOICES; `stop` at most MAX_STOPS strings. Depends on `contract.py` alone.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from contract import (  # type: ignore[import-not-found]
    MAX_MESSAGES,
    MAX_NEW_TOKENS,
    ROLES,
    ContractError,
    load_body,
    number,
    text,
)

DEFAULT_MAX_TOKENS = 256
MAX_CHOICES = 8
MAX_STOPS = 4
"""OpenAI's own limit on stop sequences."""
MAX_STOP_CHARS = 200
FIELDS = (
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "stream",
    "stream_options",
    "logprobs",
    "top_logprobs",
)
MAX_TOP_LOGPROBS = 5


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, str]]
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 1.0
    """OpenAI's default; 0 is greedy decoding."""
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    """With `stream`: a last chunk with the usage and no choices, as OpenAI sends it."""
    logprobs: bool = False
    """Each answer token's log-probability (not streamed here), and `top_logprobs` more."""
    top_logprobs: int = 0


def _whole(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(f"{name} must be a whole number, got {json.dumps(value)}", param=name)
    if not low <= value <= high:
        raise ContractError(f"{name} = {value} is out of range: {low} to {high}", param=name)
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ContractError(f"{name} must be true or false, got {json.dumps(value)}", param=name)
    return value


def _messages(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise ContractError("messages must be a non-empty list", param="messages")
    if len(raw) > MAX_MESSAGES:
        raise ContractError(
            f"messages holds {len(raw)} messages; at most {MAX_MESSAGES}", param="messages"
        )
    messages = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or set(message) - {"role", "content", "name"}:
            raise ContractError(
                f"{where} must be an object with 'role' and 'content' (and an optional 'name')",
                param=where,
            )
        role = message.get("role")
        if role not in ROLES:
            raise ContractError(
                f"{where}.role is {json.dumps(role)}; must be one of {', '.join(ROLES)}",
                param=f"{where}.role",
            )
        content = text(f"{where}.content", message.get("content"))
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "user":
        raise ContractError(
            f"messages: the last message must be the user's, not {messages[-1]['role']!r}",
            param="messages",
        )
    return messages


def _stop(raw: Any) -> tuple[str, ...]:
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise ContractError("stop must be a string or a list of non-empty strings", param="stop")
    if len(stops) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stops):
        raise ContractError(
            f"stop holds at most {MAX_STOPS} strings of at most {MAX_STOP_CHARS} characters",
            param="stop",
        )
    return tuple(stops)


def parse_chat_request(body: str | bytes, served_model: str) -> ChatRequest:
    """Validate a chat-completions body; raises ContractError (400, 404 or 413) with the
    reason and the field."""
    payload = load_body(body)
    if not isinstance(payload, dict):
        raise ContractError("the body must be a JSON object")
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        raise ContractError(
            f"unknown field(s) {', '.join(unknown)}; this server takes {', '.join(FIELDS)}",
            param=unknown[0],
        )
    model = payload.get("model", served_model)
    if model != served_model:
        raise ContractError(
            f"model {json.dumps(model)} is not served here; this server serves {served_model!r}",
            status=404,
            param="model",
            code="model_not_found",
        )
    if "max_tokens" in payload and "max_completion_tokens" in payload:
        raise ContractError(
            "give max_tokens or max_completion_tokens, not both", param="max_completion_tokens"
        )
    limit_name = "max_completion_tokens" if "max_completion_tokens" in payload else "max_tokens"
    options = payload.get("stream_options") or {}
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise ContractError("stream_options takes only include_usage", param="stream_options")
    stream = _flag("stream", payload.get("stream", False))
    if options and not stream:
        raise ContractError("stream_options is only allowed with stream", param="stream_options")
    seed = payload.get("seed")
    logprobs = _flag("logprobs", payload.get("logprobs", False))
    top_logprobs = _whole("top_logprobs", payload.get("top_logprobs", 0), 0, MAX_TOP_LOGPROBS)
    if top_logprobs and not logprobs:
        raise ContractError("top_logprobs needs logprobs: true", param="top_logprobs")
    if logprobs and stream:
        raise ContractError("logprobs are answered whole here, not streamed", param="logprobs")
    return ChatRequest(
        messages=_messages(payload.get("messages")),
        max_tokens=_whole(
            limit_name, payload.get(limit_name, DEFAULT_MAX_TOKENS), 1, MAX_NEW_TOKENS
        ),
        temperature=number("temperature", payload.get("temperature", 1.0), 0, 2, prefix=""),
        top_p=number("top_p", payload.get("top_p", 1.0), 0, 1, low_open=True, prefix=""),
        stop=_stop(payload["stop"]) if payload.get("stop") is not None else (),
        seed=None if seed is None else _whole("seed", seed, -(2**63), 2**63 - 1),
        n=_whole("n", payload.get("n", 1), 1, MAX_CHOICES),
        stream=stream,
        include_usage=_flag("stream_options.include_usage", options.get("include_usage", False)),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )


@dataclass(frozen=True)
class Choice:
    text: str
    finish_reason: str
    """"stop" (an end token or a stop string) or "length" (max_tokens reached)."""
    tokens: int
    logprobs: list[dict[str, Any]] | None = None
    """OpenAI's `logprobs.content`: per token, its text, log-probability, bytes and the
    top alternatives."""


def token_logprob(token: str, logprob: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    """One entry of `logprobs.content`."""

    def entry(text: str, value: float) -> dict[str, Any]:
        return {"token": text, "logprob": value, "bytes": list(text.encode("utf-8"))}

    return {**entry(token, logprob), "top_logprobs": [entry(t, v) for t, v in top]}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(model: str, prompt_tokens: int, choices: list[Choice]) -> dict[str, Any]:
    """A whole `chat.completion` answer."""
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": choice.text},
                "logprobs": None if choice.logprobs is None else {"content": choice.logprobs},
                "finish_reason": choice.finish_reason,
            }
            for index, choice in enumerate(choices)
        ],
        "usage": usage(prompt_tokens, sum(choice.tokens for choice in choices)),
    }


def chunk(
    identity: str,
    model: str,
    index: int,
    delta: dict[str, str],
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk` of a streamed answer."""
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return _chunk(identity, model, choices=[choice])


def usage_chunk(
    identity: str, model: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """The last chunk, with the usage and no choices (`stream_options.include_usage`)."""
    return _chunk(identity, model, choices=[], usage=usage(prompt_tokens, completion_tokens))


def _chunk(identity: str, model: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": identity,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        **fields,
    }


def error_body(
    message: str, status: int, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error shape."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def models_list(model: str, created: int) -> dict[str, Any]:
    """`GET /v1/models`: the one served model."""
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": created, "owned_by": "finetune-phi"}],
    }
