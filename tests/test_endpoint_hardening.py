"""The endpoint client against endpoints that misbehave: each case failed before (a key sent
to a redirect's host, a day's sleep, a dripping server, raw tracebacks) and is held here."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from finetune_phi.endpoint_client import RETRY_AFTER_CAP, EndpointClient, EndpointError
from jobs.score.contract import ContractError, parse_request
from tests.contract_server import Recorded, contract_server
from tests.support import BIN, ROOT, raw_server, read_request

KEY = "k3y-that-must-stay-home-7f2a"
QUESTION = [{"role": "user", "content": "q"}]


def reply(status: str, headers: dict[str, str], body: bytes) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "303 See Other"])
def test_a_redirect_is_reported_and_the_key_never_leaves_the_scoring_host(status: str) -> None:
    with contract_server(Recorded()) as (elsewhere, seen):

        def redirect(connection: socket.socket) -> None:
            read_request(connection)
            connection.sendall(reply(status, {"Location": elsewhere}, b""))
            connection.close()

        with raw_server(redirect) as uri, pytest.raises(EndpointError) as caught:
            EndpointClient(uri, key=KEY, timeout=10).chat(QUESTION)
    assert seen.requests == []
    message = str(caught.value)
    assert f"redirect (HTTP {status.split()[0]}) to {elsewhere}; not followed" in message
    assert KEY not in message


def test_one_deadline_holds_against_a_server_that_drips_its_answer() -> None:
    def drip(connection: socket.socket) -> None:
        read_request(connection)
        body = b'{"output": "' + b"x" * 200 + b'"}'
        connection.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for byte in body:
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                return
            time.sleep(0.05)

    with raw_server(drip) as uri:
        started = time.monotonic()
        with pytest.raises(EndpointError, match=r"no answer within 1\.5 s"):
            EndpointClient(uri, timeout=1.5).chat(QUESTION)
        assert time.monotonic() - started < 4


def test_a_server_that_never_answers_is_cut_off_at_the_deadline() -> None:
    def silent(connection: socket.socket) -> None:
        read_request(connection)
        time.sleep(5)

    with raw_server(silent) as uri:
        started = time.monotonic()
        with pytest.raises(EndpointError, match=r"no answer within 1 s"):
            EndpointClient(uri, timeout=1).chat(QUESTION)
        assert time.monotonic() - started < 3


def test_retry_after_is_capped_and_a_wait_past_the_deadline_fails_at_once() -> None:
    slept: list[float] = []

    def busy(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(reply("429 Too Many Requests", {"Retry-After": "86400"}, b"{}"))
        connection.close()

    with raw_server(busy) as uri:
        started = time.monotonic()
        with pytest.raises(EndpointError) as caught:
            EndpointClient(uri, timeout=120, sleep=slept.append).chat(QUESTION)
    assert time.monotonic() - started < 5
    assert slept == [RETRY_AFTER_CAP] * 3  # honoured, but never more than the cap
    assert "too many requests (HTTP 429)" in str(caught.value)
    with raw_server(busy) as uri, pytest.raises(EndpointError) as caught:
        EndpointClient(uri, timeout=10, sleep=slept.append).chat(QUESTION)
    assert f"asked to retry after {RETRY_AFTER_CAP:g} s, past the 10 s deadline" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ("reset", "closed the connection"),
        ("hang up", "closed the connection"),
        ("not json", "answered HTTP 200 without JSON: 'Service Unavailable page'"),
    ],
)
def test_transport_and_parse_failures_are_the_clients_own_errors(
    behaviour: str, message: str
) -> None:
    def misbehave(connection: socket.socket) -> None:
        read_request(connection)
        if behaviour == "reset":
            connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        elif behaviour == "not json":
            connection.sendall(
                reply("200 OK", {"Content-Type": "text/html"}, b"Service Unavailable page")
            )
        connection.close()

    with raw_server(misbehave) as uri, pytest.raises(EndpointError, match=message):
        EndpointClient(uri, timeout=10).chat(QUESTION)


def test_an_error_page_that_echoes_the_request_never_shows_the_key() -> None:
    def echo(connection: socket.socket) -> None:
        request = read_request(connection)
        connection.sendall(reply("400 Bad Request", {"Content-Type": "text/plain"}, request))
        connection.close()

    with raw_server(echo) as uri, pytest.raises(EndpointError) as caught:
        EndpointClient(uri, key=KEY, timeout=10).chat(QUESTION)
    assert "Authorization: Bearer ***" in str(caught.value)
    assert KEY not in str(caught.value)


def test_only_http_urls_are_called() -> None:
    with pytest.raises(EndpointError, match="must be an http"):
        EndpointClient("file:///etc/passwd", key=KEY).chat(QUESTION)


# --- bodies that are not UTF-8, at the scoring contract of both servers ---

UNDECODABLE = {
    "latin-1": (
        '{"input_data": ["caf\u00e9?"]}'.encode("latin-1"),
        "the body is not UTF-8: byte 0xe9 at offset 20 (Latin-1 or another encoding?); "
        "send JSON encoded as UTF-8",
    ),
    "utf-16": (
        '{"input_data": ["q"]}'.encode("utf-16"),
        "the body is UTF-16 or UTF-32; send JSON encoded as UTF-8",
    ),
    "utf-16-le-without-bom": (
        '{"input_data": ["q"]}'.encode("utf-16-le"),
        "the body is UTF-16 or UTF-32; send JSON encoded as UTF-8",
    ),
    "utf-32": (
        '{"input_data": ["q"]}'.encode("utf-32"),
        "the body is UTF-16 or UTF-32; send JSON encoded as UTF-8",
    ),
}

STUB_ENTRY = """
import sys
sys.path.insert(0, {score!r})
from score import run  # the real run(), as Azure ML's inference server loads it


def init() -> None:  # no model: every request here is refused before generation
    pass
"""


@pytest.mark.parametrize("name", sorted(UNDECODABLE))
def test_an_undecodable_body_breaks_the_contract_like_any_bad_body(name: str) -> None:
    """The contract (and so the local front, jobs/score/server.py) refuses what is not
    UTF-8 with the reason; json.loads alone read UTF-16 and UTF-32 bodies as if valid."""
    body, reason = UNDECODABLE[name]
    with pytest.raises(ContractError) as caught:
        parse_request(body)
    assert (caught.value.status, str(caught.value)) == (400, reason)
    bom = b"\xef\xbb\xbf" + json.dumps({"input_data": ["q"]}).encode()
    assert parse_request(bom).conversations == [[{"role": "user", "content": "q"}]]


@pytest.fixture(scope="module")
def inference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """azureml-inference-server-http, as a managed deployment runs it, with score.py's own
    run() and an init() that loads nothing."""
    folder = tmp_path_factory.mktemp("inference-server")
    entry = folder / "entry.py"
    entry.write_text(STUB_ENTRY.format(score=str(ROOT / "jobs" / "score")))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with (folder / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [str(BIN / "azmlinfsrv"), "--entry_script", str(entry), "--port", str(port)],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AZUREML_MODEL_DIR": str(folder)},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (folder / "server.log").read_text()
            assert time.monotonic() < deadline, "azmlinfsrv did not start in 120 s"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as ready:
                if ready.status == 200:
                    break
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def post_score(url: str, body: bytes, method: str = "POST") -> tuple[int, object]:
    request = urllib.request.Request(
        f"{url}/score",
        data=body if method == "POST" else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("name", sorted(UNDECODABLE))
def test_azure_mls_inference_server_answers_an_undecodable_body_in_the_contracts_shape(
    inference_server: str, name: str
) -> None:
    """Left to the inference server, a Latin-1 or UTF-16 body got 400
    `{"message": "Input cannot be decoded as UTF-8..."}`; the contract's shape is
    `{"error": reason}`, which clients (`phi chat`, the flow) read."""
    body, reason = UNDECODABLE[name]
    assert post_score(inference_server, body) == (400, {"error": reason})


def test_the_inference_server_still_answers_other_bad_bodies_and_methods(
    inference_server: str,
) -> None:
    status, answer = post_score(inference_server, b'{"input_data": [')
    assert status == 400
    assert isinstance(answer, dict)
    assert str(answer["error"]).startswith("the body is not valid JSON")
    assert post_score(inference_server, json.dumps({"input_data": []}).encode()) == (
        400,
        {"error": "input_data must hold 1 to 16 questions"},
    )
    assert post_score(inference_server, b"", method="GET") == (
        405,
        {"error": "GET /score is not served; POST a JSON body"},
    )
