"""A framework-free client of the scoring contract (jobs/uploads/score/contract.py).

Used by `phi chat` and, through a thin adapter, by this flow's Prompt flow tool. It depends
on the standard library only and knows nothing of Prompt flow, which retires on 2027-04-20:
whatever replaces the flow (Microsoft Agent Framework, say) can call it as it is. Retries 429 and 503 with exponential backoff (honouring
Retry-After); every other failure becomes an EndpointError that says what to do. The key
is sent as a bearer token and never appears in an error message.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

RETRIED = (429, 503)
APIS = ("score", "chat-completions")
"""score: the managed endpoint's contract (jobs/uploads/score/contract.py); chat-completions: a
serverless endpoint's `/chat/completions` (messages in, choices[0].message.content out)."""
NO_TRAFFIC = "No valid deployments to route to"


def history_messages(
    chat_history: list[Any] | None, question: str, system: str = ""
) -> list[dict[str, str]]:
    """A chat flow's history (`{"inputs": {"question"}, "outputs": {"answer"}}` items) and the
    new question, as the contract's messages."""
    messages = [{"role": "system", "content": system}] if system else []
    for turn in chat_history or []:
        inputs, outputs = turn.get("inputs", {}), turn.get("outputs", {})
        if inputs.get("question"):
            messages.append({"role": "user", "content": str(inputs["question"])})
        if outputs.get("answer"):
            messages.append({"role": "assistant", "content": str(outputs["answer"])})
    messages.append({"role": "user", "content": question})
    return messages


class EndpointError(RuntimeError):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


def explain(status: int, body: str, headers: Mapping[str, str]) -> str:
    """What an endpoint failure means and what to do about it."""
    if NO_TRAFFIC in body:
        return (
            "the endpoint has no deployment with traffic (0 %): run `phi deploy`, "
            "or route traffic to an existing deployment"
        )
    reason = _error_text(body)
    if status in (401, 403):
        return (
            f"the endpoint rejected the key (HTTP {status}): the key is wrong or was regenerated; "
            "`phi chat --stack` and `phi flow connect` fetch the current one"
        )
    if status == 404:
        return f"nothing found at this scoring URI (HTTP 404): check scoringUri in the stack outputs ({reason})"
    if status == 408:
        return (
            "the request timed out (HTTP 408): ask for fewer max_new_tokens, "
            "or raise the deployment's request timeout (`phi deploy --request-timeout-ms`)"
        )
    if status == 424:
        # A managed endpoint turns any non-200 of the scoring script into 424, keeping the
        # script's status in this header and its body as the body.
        original = headers.get("ms-azureml-model-error-statuscode", "")
        if original.isdigit() and 400 <= int(original) < 500:
            return f"HTTP {original} (424 from Azure): {reason}"
        model_error = headers.get("ms-azureml-model-error-reason") or "model_error"
        return (
            f"the model failed (HTTP {original or '?'} ({model_error}), 424 from Azure: {reason}); "
            "read the deployment's logs: "
            "az ml online-deployment get-logs --endpoint-name ENDPOINT --name DEPLOYMENT"
        )
    if status == 429:
        return "too many requests (HTTP 429) even after retrying: slow down, or add instances"
    if status == 400:
        return f"the endpoint refused the request (HTTP 400): {reason}"
    return f"the endpoint answered HTTP {status}: {reason}"


def _error_text(body: str) -> str:
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        return body.strip()[:300] or "no details"
    if isinstance(parsed, dict):
        error = parsed.get("error") or parsed.get("message") or parsed
        return str(error.get("message", error) if isinstance(error, dict) else error)[:300]
    return str(parsed)[:300]


@dataclass
class EndpointClient:
    scoring_uri: str
    key: str | None = field(default=None, repr=False)
    api: str = "score"
    timeout: float = 120.0
    retries: int = 3
    backoff: float = 1.0
    sleep: Callable[[float], None] = time.sleep

    def score(self, payload: Any) -> Any:
        """POST one request; the parsed JSON answer."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        data = json.dumps(payload).encode()
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(  # noqa: S310 - the user's own endpoint URL
                self.scoring_uri, data=data, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the user's endpoint
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                body = error.read().decode(errors="replace")
                if error.code in RETRIED and attempt < self.retries and NO_TRAFFIC not in body:
                    retry_after = error.headers.get("Retry-After", "")
                    self.sleep(
                        float(retry_after) if retry_after.isdigit() else self.backoff * 2**attempt
                    )
                    continue
                message = explain(error.code, body, dict(error.headers))
                raise EndpointError(error.code, self._redact(message)) from None
            except TimeoutError:
                raise EndpointError(
                    None, f"no answer within {self.timeout:g} s from the endpoint"
                ) from None
            except urllib.error.URLError as error:
                raise EndpointError(
                    None, f"cannot reach {self.scoring_uri}: {error.reason}"
                ) from None
        raise AssertionError("unreachable")

    def _redact(self, text: str) -> str:
        """The text with the key, if it echoes it, masked."""
        return text.replace(self.key, "***") if self.key else text

    def chat(
        self, messages: list[dict[str, str]], parameters: Mapping[str, Any] | None = None
    ) -> str:
        """The assistant's answer to a conversation that ends with the user's message.

        `parameters` are the scoring contract's (temperature, top_p, max_new_tokens,
        do_sample); for chat-completions they are translated to that API's names.
        """
        if self.api not in APIS:
            raise EndpointError(None, f"api {self.api!r}: must be one of {', '.join(APIS)}")
        if self.api == "chat-completions":
            answer = self.score(
                {"messages": messages, **chat_completions_parameters(parameters or {})}
            )
            try:
                return str(answer["choices"][0]["message"]["content"])
            except (KeyError, IndexError, TypeError):
                raise EndpointError(
                    200, f"the endpoint answered outside chat-completions: {str(answer)[:200]}"
                ) from None
        body: dict[str, Any] = {"input_string": messages}
        if parameters:
            body["parameters"] = dict(parameters)
        answer = self.score({"input_data": body})
        if not isinstance(answer, dict) or not isinstance(answer.get("output"), str):
            raise EndpointError(
                200, f"the endpoint answered outside the contract: {str(answer)[:200]}"
            )
        return str(answer["output"])


def chat_completions_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The scoring contract's parameter names, as the chat-completions API spells them."""
    renamed = {"temperature": "temperature", "top_p": "top_p", "max_new_tokens": "max_tokens"}
    translated = {renamed[name]: value for name, value in parameters.items() if name in renamed}
    if parameters.get("do_sample") is False:
        translated["temperature"] = 0
    return translated
