"""Endpoint failures, as a managed online endpoint answers them, become clear messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from finetune_phi.cli.main import main
from finetune_phi.endpoint_client import EndpointClient, EndpointError, history_messages
from tests.contract_server import Recorded, Reply, contract_server

SECRET = "s3cr3t-endpoint-key"


@contextmanager
def endpoint(replies: list[Reply]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local endpoint answering each POST with the next scripted (status, headers, body)."""
    with contract_server(Recorded(script=list(replies))) as (uri, recorded):
        yield uri, recorded.requests


def client(uri: str) -> EndpointClient:
    return EndpointClient(uri, key=SECRET, retries=2, sleep=lambda _: None)


def test_the_request_follows_the_contract_with_the_key_as_bearer() -> None:
    with endpoint([(200, {}, {"output": "Paris."})]) as (uri, seen):
        messages = [{"role": "user", "content": "Capital of France?"}]
        assert client(uri).chat(messages, {"temperature": 0.2}) == "Paris."
    assert seen[0]["input_data"] == {"input_string": messages, "parameters": {"temperature": 0.2}}
    assert seen[0]["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_a_named_deployment_is_asked_alone_with_azure_mls_header() -> None:
    with endpoint([(200, {}, {"output": "a"}), (200, {}, {"output": "b"})]) as (uri, seen):
        messages = [{"role": "user", "content": "Hi"}]
        client(uri).chat(messages)
        EndpointClient(uri, key=SECRET, deployment="green").chat(messages)
    assert "azureml-model-deployment" not in {name.lower() for name in seen[0]["headers"]}
    assert seen[1]["headers"]["azureml-model-deployment"] == "green"


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
        (
            424,
            {
                "ms-azureml-model-error-statuscode": "500",
                "ms-azureml-model-error-reason": "model_error",
            },
            {"message": "CUDA out of memory"},
            "the model failed (HTTP 500 (model_error), 424 from Azure: CUDA out of memory)",
        ),
        (
            424,
            {
                "ms-azureml-model-error-statuscode": "400",
                "ms-azureml-model-error-reason": "model_error",
            },
            {"error": "parameters.temperature = 5 is out of range: at least 0, at most 2"},
            "HTTP 400 (424 from Azure): parameters.temperature = 5 is out of range",
        ),
        (
            400,
            {},
            {"error": f"echoed header: Authorization: Bearer {SECRET}"},
            "echoed header: Authorization: Bearer ***",
        ),
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
    # Three times: the client retries 429 twice before it gives up.
    with (
        endpoint([(status, headers, body)] * 3) as (uri, _),
        pytest.raises(EndpointError) as caught,
    ):
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


def test_a_chat_flow_history_becomes_the_contracts_messages() -> None:
    history = [
        {"inputs": {"question": "Capital of France?"}, "outputs": {"answer": "Paris."}},
        {"inputs": {"question": "And of Italy?"}, "outputs": {"answer": "Rome."}},
    ]
    assert history_messages(history, "And of Spain?", "Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome."},
        {"role": "user", "content": "And of Spain?"},
    ]
    assert history_messages(None, "Hi") == [{"role": "user", "content": "Hi"}]


def test_phi_chat_shows_the_scoring_scripts_reason_behind_azures_424(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reply = (
        424,
        {
            "ms-azureml-model-error-statuscode": "400",
            "ms-azureml-model-error-reason": "model_error",
        },
        {"error": "parameters.temperature = 5 is out of range: at least 0, at most 2"},
    )
    with endpoint([reply]) as (uri, _):
        assert main(["chat", "--url", uri, "--temperature", "5", "Hi"]) == 1
    assert capsys.readouterr().err == (
        "phi: error: HTTP 400 (424 from Azure): parameters.temperature = 5 is out of range: "
        "at least 0, at most 2\n"
    )
