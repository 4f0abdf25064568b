"""Endpoint failures, as a managed online endpoint answers them, become clear messages."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jobs.endpoint_client import EndpointClient, EndpointError

SECRET = "s3cr3t-endpoint-key"


@contextmanager
def endpoint(
    replies: list[tuple[int, dict[str, str], object]],
) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A local server answering each POST with the next (status, headers, body)."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            seen.append({"body": self.rfile.read(length).decode(), **dict(self.headers)})
            status, headers, body = replies[min(len(seen), len(replies)) - 1]
            payload = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/score", seen
    finally:
        server.shutdown()
        server.server_close()


def client(uri: str) -> EndpointClient:
    return EndpointClient(uri, key=SECRET, retries=2, sleep=lambda _: None)


def test_the_request_follows_the_contract_with_the_key_as_bearer() -> None:
    with endpoint([(200, {}, {"output": "Paris."})]) as (uri, seen):
        messages = [{"role": "user", "content": "Capital of France?"}]
        assert client(uri).chat(messages, {"temperature": 0.2}) == "Paris."
    assert json.loads(seen[0]["body"]) == {
        "input_data": {"input_string": messages, "parameters": {"temperature": 0.2}}
    }
    assert seen[0]["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_are_retried(status: int) -> None:
    with endpoint(
        [(status, {"Retry-After": "1"}, {"error": "busy"}), (200, {}, {"output": "ok"})]
    ) as (uri, seen):
        assert client(uri).chat([{"role": "user", "content": "q"}]) == "ok"
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("status", "headers", "body", "advice"),
    [
        (401, {}, {"message": "Unauthorized"}, "rejected the key"),
        (404, {}, {"message": "Not found"}, "check scoringUri"),
        (408, {}, {"message": "Request timeout"}, "fewer max_new_tokens"),
        (424, {"ms-azureml-model-error-reason": "model_error"}, {"message": "boom"}, "get-logs"),
        (429, {}, {"message": "Too many"}, "slow down"),
        (
            424,
            {},
            {
                "message": "No valid deployments to route to. Please check that the endpoint has at least one deployment with positive weight values"
            },
            "phi deploy",
        ),
    ],
)
def test_failures_say_what_to_do_and_never_show_the_key(
    status: int, headers: dict[str, str], body: object, advice: str
) -> None:
    with endpoint([(status, headers, body)]) as (uri, _), pytest.raises(EndpointError) as caught:
        client(uri).chat([{"role": "user", "content": "q"}])
    assert caught.value.status == status
    assert advice in str(caught.value)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(client(uri))


def test_an_answer_outside_the_contract_is_an_error() -> None:
    with (
        endpoint([(200, {}, ["a list"])]) as (uri, _),
        pytest.raises(EndpointError, match="outside the contract"),
    ):
        client(uri).chat([{"role": "user", "content": "q"}])


def test_an_unreachable_endpoint_is_named() -> None:
    with pytest.raises(EndpointError, match=r"cannot reach http://127\.0\.0\.1:9/score"):
        EndpointClient("http://127.0.0.1:9/score", timeout=2).chat(
            [{"role": "user", "content": "q"}]
        )
