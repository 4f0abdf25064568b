"""The scoring contract: one request/response format, served locally and in Azure.

Two request shapes are accepted, the two the tutorials send:

chat (history and parameters):
    {"input_data": {"input_string": [{"role": "user", "content": "Hi"}, ...],
                    "parameters": {"temperature": 0.7, "max_new_tokens": 128}}}
    -> {"output": "generated assistant text"}

batch (one question per string):
    {"input_data": ["question one", "question two"], "params": {...}}
    -> ["answer one", "answer two"]

Roles are system (first only), user and assistant; the last message is the user's.
Parameters, all optional: temperature 0-2 (default 0.7), top_p above 0 up to 1 (0.9),
max_new_tokens 1-MAX_NEW_TOKENS (256), do_sample true/false (true). Anything else is a
400 with the reason.

Limits, checked before any tokenizing or generation: a body of at most MAX_REQUEST_BYTES
(413 beyond), MAX_MESSAGES messages of at most MAX_MESSAGE_CHARS characters each, finite
JSON numbers, integers of at most MAX_INTEGER_DIGITS digits, a body encoded as UTF-8, valid
Unicode (no lone surrogates), and JSON nested no deeper than Python's parser allows. The scoring script
then refuses a conversation longer, after the chat template, than the model's context
minus max_new_tokens. This module depends on nothing, so clients and tests can share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_NEW_TOKENS = 1024
MAX_BATCH = 16
MAX_REQUEST_BYTES = 1_000_000
"""Under the 1.5 MB a managed endpoint accepts."""
MAX_MESSAGES = 64
MAX_MESSAGE_CHARS = 32_000
MAX_INTEGER_DIGITS = 18
ROLES = ("system", "user", "assistant")


class ContractError(ValueError):
    """A request that breaks the contract: answered with `status` (400; 413 when too large;
    404 for a model not served) and this message; `param` and `code` fill OpenAI's error
    shape."""

    def __init__(
        self, message: str, status: int = 400, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code


def _refuse_constant(name: str) -> Any:
    raise ContractError(f"the body holds {name}: JSON numbers must be finite")


def _bounded_integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ContractError(
            f"the body holds an integer of {len(text)} digits; at most {MAX_INTEGER_DIGITS}"
        )
    return int(text)


def text(where: str, value: Any) -> str:
    """A non-empty string of valid Unicode within MAX_MESSAGE_CHARS."""
    if not isinstance(value, str) or not value.strip():
        raise ContractError(f"{where} must be a non-empty string")
    if len(value) > MAX_MESSAGE_CHARS:
        raise ContractError(f"{where} is {len(value)} characters; at most {MAX_MESSAGE_CHARS}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ContractError(f"{where} is not valid Unicode (a lone surrogate)") from None
    return value


@dataclass(frozen=True)
class GenerationParameters:
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    do_sample: bool = True


@dataclass(frozen=True)
class ScoringRequest:
    conversations: list[list[dict[str, str]]]
    parameters: GenerationParameters = field(default_factory=GenerationParameters)
    shape: str = "chat"
    """"chat" answers {"output": text}; "batch" answers [text, ...]."""

    def response(self, answers: list[str]) -> Any:
        return {"output": answers[0]} if self.shape == "chat" else answers


def number(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    prefix: str = "parameters.",
) -> float:
    """A JSON number within [low, high] (or (low, high]); `prefix` places it in the body."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError(f"{prefix}{name} must be a number, got {json.dumps(value)}", param=name)
    if value < low or value > high or (low_open and value == low):
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        raise ContractError(
            f"{prefix}{name} = {value:g} is out of range: {bound}, at most {high:g}", param=name
        )
    return float(value)


def parse_parameters(raw: Any) -> GenerationParameters:
    if raw is None:
        return GenerationParameters()
    if not isinstance(raw, dict):
        raise ContractError("parameters must be an object")
    unknown = sorted(set(raw) - {"temperature", "top_p", "max_new_tokens", "do_sample"})
    if unknown:
        raise ContractError(
            f"unknown parameter(s) {', '.join(unknown)}; known: temperature, top_p, max_new_tokens, do_sample"
        )
    defaults = GenerationParameters()
    max_new_tokens = raw.get("max_new_tokens", defaults.max_new_tokens)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise ContractError(
            f"parameters.max_new_tokens must be a whole number, got {json.dumps(max_new_tokens)}"
        )
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ContractError(
            f"parameters.max_new_tokens = {max_new_tokens} is out of range: 1 to {MAX_NEW_TOKENS}"
        )
    do_sample = raw.get("do_sample", defaults.do_sample)
    if not isinstance(do_sample, bool):
        raise ContractError(
            f"parameters.do_sample must be true or false, got {json.dumps(do_sample)}"
        )
    return GenerationParameters(
        temperature=number("temperature", raw.get("temperature", defaults.temperature), 0, 2),
        top_p=number("top_p", raw.get("top_p", defaults.top_p), 0, 1, low_open=True),
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
    )


def parse_messages(raw: Any) -> list[dict[str, str]]:
    where = "input_data.input_string"
    if not isinstance(raw, list) or not raw:
        raise ContractError(f"{where} must be a non-empty list of messages")
    if len(raw) > MAX_MESSAGES:
        raise ContractError(f"{where} holds {len(raw)} messages; at most {MAX_MESSAGES}")
    messages = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise ContractError(
                f"{where}[{index}] must be an object with only 'role' and 'content'"
            )
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ContractError(
                f"{where}[{index}].role is {json.dumps(role)}; must be one of {', '.join(ROLES)}"
            )
        if role == "system" and index != 0:
            raise ContractError(f"{where}[{index}]: only the first message may be a system message")
        messages.append({"role": role, "content": text(f"{where}[{index}].content", content)})
    if messages[-1]["role"] != "user":
        raise ContractError(
            f"{where}: the last message must be the user's, not {messages[-1]['role']!r}"
        )
    return messages


def load_body(body: str | bytes) -> Any:
    """The body's JSON, within the size and number limits; ContractError otherwise. Bytes
    must be UTF-8 (RFC 8259; a UTF-8 byte-order mark is allowed): a body in Latin-1, UTF-16
    or UTF-32 is refused with the reason, in the contract's error shape like any bad body."""
    size = len(body.encode("utf-8", errors="surrogatepass") if isinstance(body, str) else body)
    if size > MAX_REQUEST_BYTES:
        raise ContractError(f"the body is {size} bytes; at most {MAX_REQUEST_BYTES}", status=413)
    text = decode_body(body) if isinstance(body, bytes) else body
    try:
        payload = json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_integer)
    except RecursionError:
        raise ContractError("the body is JSON nested too deeply") from None
    except json.JSONDecodeError as error:
        raise ContractError(f"the body is not valid JSON: {error}") from None
    return payload


def decode_body(body: bytes) -> str:
    """A request body as text: UTF-8, or a ContractError naming the encoding it is in."""
    if body.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in body[:4]:
        raise ContractError("the body is UTF-16 or UTF-32; send JSON encoded as UTF-8")
    try:
        return body.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as error:
        start = error.start + (3 if body.startswith(b"\xef\xbb\xbf") else 0)
        raise ContractError(
            f"the body is not UTF-8: byte 0x{body[start]:02x} at offset {start} (Latin-1 or "
            "another encoding?); send JSON encoded as UTF-8"
        ) from None


def parse_request(body: str | bytes) -> ScoringRequest:
    """Validate a request body; raises ContractError with the reason (and its status)."""
    payload = load_body(body)
    if not isinstance(payload, dict) or "input_data" not in payload:
        raise ContractError("the body must be a JSON object with 'input_data'")
    data = payload["input_data"]
    if isinstance(data, dict):
        beside = ", ".join(sorted(set(payload) - {"input_data"}))
        if beside:
            raise ContractError(
                f"unknown key(s) {beside} beside input_data; the chat shape takes its parameters "
                "in input_data.parameters"
            )
        unknown = sorted(set(data) - {"input_string", "parameters"})
        if unknown:
            raise ContractError(f"input_data has unknown key(s) {', '.join(unknown)}")
        return ScoringRequest(
            [parse_messages(data.get("input_string"))],
            parse_parameters(data.get("parameters")),
            "chat",
        )
    if isinstance(data, list):
        stray = sorted(set(payload) - {"input_data", "params"})
        if stray:
            raise ContractError(
                f"unknown key(s) {', '.join(stray)} beside input_data; the batch shape takes its "
                "parameters in 'params'"
            )
        if not data or len(data) > MAX_BATCH:
            raise ContractError(f"input_data must hold 1 to {MAX_BATCH} questions")
        if not all(isinstance(question, str) and question.strip() for question in data):
            raise ContractError("input_data must be a list of non-empty strings")
        conversations = [
            [{"role": "user", "content": text(f"input_data[{index}]", question)}]
            for index, question in enumerate(data)
        ]
        return ScoringRequest(conversations, parse_parameters(payload.get("params")), "batch")
    raise ContractError("input_data must be an object (chat) or a list of strings (batch)")
