"""A framework-free client of an endpoint's contract (the scoring script's or OpenAI's chat
completions).

Used by `phi chat`, `phi eval` and, through a thin adapter, by the Prompt flow tool
(flow/promptflow/) and the Agent Framework chat (flow/agent/). It depends
on the standard library only and knows nothing of Prompt flow, which retires on 2027-04-20:
whatever replaces the flow (Microsoft Agent Framework, say) can call it as it is.

What it promises:
- the key goes to the scoring host only: a redirect is never followed but reported, with
  its Location (http.client, not urllib, which re-sends the Authorization header to
  whatever host a 301/302/303 names);
- one deadline (`timeout`) for the whole call, attempts, waits and body reads included,
  held by a watchdog that closes the socket (a per-read timeout lets a server that drips a
  byte at a time hold the client for ever);
- 429 and 503 are retried with exponential backoff, honouring Retry-After up to a cap;
- every transport or parse failure is an EndpointError that says what to do, and the key
  is masked in any text it shows.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

RETRIED = (429, 503)
APIS = ("score", "chat-completions")
"""The contracts an endpoint may speak, whatever runs it: score, the scoring script's
(jobs/score/contract.py); chat-completions, OpenAI's `/chat/completions` (messages in,
choices[0].message.content out), as serverless endpoints speak it. Which one an endpoint
speaks is its serving engine's business (finetune_phi.serving), not where it runs."""
NO_TRAFFIC = "No valid deployments to route to"
MAX_RESPONSE_BYTES = 16 * 2**20
RETRY_AFTER_CAP = 30.0
"""The longest wait a Retry-After header gets; a longer one is cut to this."""


def retry_wait(retry_after: str, backoff: float) -> float:
    """Seconds to wait before the next attempt: Retry-After's seconds, capped, or the backoff."""
    try:
        seconds = float(retry_after)
    except ValueError:
        return backoff
    return min(max(seconds, 0.0), RETRY_AFTER_CAP) if math.isfinite(seconds) else backoff


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
    """Seconds for the whole call: every attempt, every wait and every byte of the answers."""
    retries: int = 3
    backoff: float = 1.0
    deployment: str | None = None
    """One deployment of a managed endpoint, whatever the traffic rules say (Azure ML's
    `azureml-model-deployment` header): how a new deployment is checked before traffic."""
    sleep: Callable[[float], None] = time.sleep

    def score(self, payload: Any) -> Any:
        """POST one request; the parsed JSON answer. 429 and 503 are retried, honouring
        Retry-After up to RETRY_AFTER_CAP seconds, within the one deadline."""
        url = urllib.parse.urlsplit(self.scoring_uri)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise EndpointError(None, f"scoring URI {self.scoring_uri!r}: must be an http(s) URL")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        if self.deployment:
            headers["azureml-model-deployment"] = self.deployment
        body = json.dumps(payload).encode()
        deadline = time.monotonic() + self.timeout
        for attempt in range(self.retries + 1):
            status, answer_headers, raw = self._post(url, body, headers, deadline)
            text = raw.decode("utf-8", errors="replace")
            if 300 <= status < 400:
                raise EndpointError(
                    status,
                    self._redact(
                        f"the endpoint answered a redirect (HTTP {status}) to "
                        f"{answer_headers.get('location', 'nowhere')}; not followed, so the key goes "
                        "to the scoring host only: check the scoring URI"
                    ),
                )
            if status == 200:
                try:
                    return json.loads(raw)
                except (ValueError, RecursionError):
                    raise EndpointError(
                        200,
                        self._redact(
                            f"the endpoint answered HTTP 200 without JSON: {text[:200]!r}"
                        ),
                    ) from None
            if status in RETRIED and attempt < self.retries and NO_TRAFFIC not in text:
                wait = retry_wait(answer_headers.get("retry-after", ""), self.backoff * 2**attempt)
                if time.monotonic() + wait >= deadline:
                    raise EndpointError(
                        status,
                        self._redact(
                            f"{explain(status, text, answer_headers)} (it asked to retry after "
                            f"{wait:g} s, past the {self.timeout:g} s deadline)"
                        ),
                    )
                self.sleep(wait)
                continue
            raise EndpointError(status, self._redact(explain(status, text, answer_headers)))
        raise AssertionError("unreachable")

    def _post(
        self, url: urllib.parse.SplitResult, body: bytes, headers: dict[str, str], deadline: float
    ) -> tuple[int, dict[str, str], bytes]:
        """One POST, cut off at the deadline (`post_within`); each failure an EndpointError."""
        late = EndpointError(None, f"no answer within {self.timeout:g} s from the endpoint")
        try:
            status, answer_headers, raw = post_within(
                url, body, headers, deadline - time.monotonic(), MAX_RESPONSE_BYTES
            )
        except TimeoutError:
            raise late from None
        except ssl.SSLError as error:
            raise EndpointError(None, f"TLS with {url.hostname} failed: {error.reason}") from None
        except (OSError, http.client.HTTPException) as error:
            closed = isinstance(
                error,
                http.client.RemoteDisconnected | ConnectionResetError | http.client.IncompleteRead,
            )
            what = (
                f"{url.scheme}://{url.netloc} closed the connection"
                if closed
                else (f"cannot reach {self.scoring_uri}")
            )
            raise EndpointError(
                None,
                f"{what} ({type(error).__name__}): check the scoring URI and that the "
                "endpoint is up",
            ) from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise EndpointError(status, f"the answer is over {MAX_RESPONSE_BYTES} bytes")
        return status, answer_headers, raw

    def _redact(self, text: str) -> str:
        """The text with the key, if it echoes it, masked."""
        return text.replace(self.key, "***") if self.key else text

    def first_token_logprob(
        self, messages: list[dict[str, str]], parameters: Mapping[str, Any] | None = None
    ) -> tuple[str, float | None]:
        """A chat-completions answer and its first token's log-probability, where the
        endpoint returns log-probabilities (None where it does not)."""
        answer = self.score(
            {
                "messages": messages,
                **chat_completions_parameters(parameters or {}),
                "logprobs": True,
            }
        )
        try:
            text = str(answer["choices"][0]["message"]["content"]).strip()
        except (KeyError, IndexError, TypeError):
            raise EndpointError(
                200, f"the endpoint answered outside chat-completions: {str(answer)[:200]}"
            ) from None
        content = ((answer["choices"][0].get("logprobs") or {}).get("content")) or []
        first = content[0].get("logprob") if content and isinstance(content[0], dict) else None
        return text, float(first) if isinstance(first, int | float) else None

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
                # Stripped, as the scoring contract answers: the same text either way.
                return str(answer["choices"][0]["message"]["content"]).strip()
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


def post_within(
    url: urllib.parse.SplitResult,
    body: bytes,
    headers: Mapping[str, str],
    seconds: float,
    max_bytes: int,
) -> tuple[int, dict[str, str], bytes]:
    """One POST to `url` (its path and query), redirects not followed, cut off after `seconds`
    wherever it is (connecting, sending, waiting, reading): a watchdog shuts the socket down,
    which no per-read timeout can do. Returns (status, headers in lower case, at most
    `max_bytes` + 1 bytes of the body: more means too long). TimeoutError when the time ran
    out; ssl.SSLError, OSError or http.client.HTTPException as they came otherwise."""
    if seconds <= 0:
        raise TimeoutError
    host = url.hostname or ""
    connection: http.client.HTTPConnection = (
        http.client.HTTPSConnection(
            host, url.port, timeout=seconds, context=ssl.create_default_context()
        )
        if url.scheme == "https"
        else http.client.HTTPConnection(host, url.port, timeout=seconds)
    )
    expired = threading.Event()

    def cut_off() -> None:
        expired.set()
        if connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(seconds, cut_off)
    watchdog.daemon = True
    watchdog.start()
    target = url.path or "/"
    try:
        connection.request(
            "POST", f"{target}?{url.query}" if url.query else target, body, dict(headers)
        )
        response = connection.getresponse()
        raw = response.read(max_bytes + 1)
        if expired.is_set():  # the watchdog's shutdown ends a read as if at its end
            raise TimeoutError
        return response.status, {k.lower(): v for k, v in response.getheaders()}, raw
    except ssl.SSLError:
        raise
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise TimeoutError from None
        raise
    finally:
        watchdog.cancel()
        connection.close()
