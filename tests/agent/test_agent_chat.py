"""The chat on Microsoft Agent Framework (flow/agent/chat.py), in its own environment: through
the framework's own OpenAI chat client against a loopback server that speaks OpenAI's
chat-completions API as `phi serve` does (its own validator refuses any field it does not
take), and through our `EndpointChatClient` against the scoring contract."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from finetune_phi.core.folders import AGENT_CHAT
from finetune_phi.endpoint_client import EndpointClient, history_messages
from tests.agent.openai_server import CHAT_COMPLETIONS, Reply, Seen, openai_server
from tests.contract_server import Recorded, contract_server


def load_chat() -> Any:
    """flow/agent/chat.py, a script of its folder, as a module."""
    spec = importlib.util.spec_from_file_location("agent_chat", AGENT_CHAT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chat = load_chat()
DEFAULTS = chat.FlowDefaults.read()
KEY = "right-key-5c1d"
HISTORY = [
    {"inputs": {"question": "What is the capital of France?"}, "outputs": {"answer": "Paris."}}
]
QUESTION = "Which river flows through it?"
AMBIENT = {
    # What the openai SDK would read from the environment and send along, were it let.
    "OPENAI_API_KEY": "sk-ambient-api-key-0a1b",
    "OPENAI_ADMIN_KEY": "sk-ambient-admin-key-2c3d",
    "OPENAI_CUSTOM_HEADERS": "Authorization: Bearer sk-ambient-header-4e5f\nX-Ambient: 6a7b",
    "OPENAI_ORG_ID": "org-ambient-8c9d",
    "OPENAI_PROJECT_ID": "proj-ambient-0e1f",
}
AMBIENT_SECRETS = ["0a1b", "2c3d", "4e5f", "6a7b", "8c9d", "0e1f"]


def run_chat(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """The script, as `phi chat --agent` runs it: the connection in its environment only."""
    env = {k: v for k, v in os.environ.items() if k not in chat.ENDPOINT_VARIABLES}
    return subprocess.run(
        [sys.executable, str(AGENT_CHAT), *args],
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *secrets: str) -> str:
    """The failure's one line: exit 1, no traceback, no secret anywhere."""
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chat.py: error: ")
    for secret in secrets:
        assert secret not in result.stderr
    return lines[0]


# The framework's OpenAI chat client, on chat completions (the default contract).


def test_the_request_is_the_flows_and_phi_serve_takes_every_field() -> None:
    with openai_server(Seen(key=KEY)) as (url, seen):
        result = run_chat(
            *("--question", QUESTION, "--chat-history", json.dumps(HISTORY), "--json"),
            PHI_ENDPOINT_URL=url,
            PHI_ENDPOINT_KEY=KEY,
        )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"answer": f"4 messages; last: {QUESTION}"}
    [request] = seen.requests
    assert (request["method"], request["path"], request["query"]) == ("POST", CHAT_COMPLETIONS, {})
    # Exactly what Agent Framework 1.23's OpenAIChatCompletionClient sends: no
    # stream_options, user, tools, tool_choice or parallel_tool_calls on a plain call.
    assert request["body"] == {
        "model": "phi",
        "stream": False,
        "messages": history_messages(HISTORY, QUESTION, DEFAULTS.system_prompt),
        "max_completion_tokens": DEFAULTS.max_new_tokens,
        "temperature": DEFAULTS.temperature,
    }


def test_a_given_temperature_is_sent_even_zero() -> None:
    with openai_server() as (url, seen):
        result = run_chat("--question", "Hi", "--temperature", "0", PHI_ENDPOINT_URL=url)
    assert result.returncode == 0, result.stderr
    assert seen.body()["temperature"] == 0


@pytest.mark.parametrize(
    ("suffix", "api"),
    [
        ("", None),
        ("/", "chat-completions"),
        ("/v1", None),
        ("/v1/", None),
        ("/v1/chat/completions", None),  # what `phi chat --agent` hands over
        ("/v1/chat/completions", "chat-completions"),
    ],
)
def test_the_endpoint_may_be_named_by_its_base_v1_or_full_url(suffix: str, api: str | None) -> None:
    variables = {"PHI_ENDPOINT_API": api} if api else {}
    with openai_server() as (url, seen):
        result = run_chat("--question", "Hi", PHI_ENDPOINT_URL=url + suffix, **variables)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2 messages; last: Hi"
    assert [(r["method"], r["path"]) for r in seen.requests] == [("POST", CHAT_COMPLETIONS)]


def test_a_query_in_the_url_goes_with_the_request() -> None:
    with openai_server() as (url, seen):
        result = run_chat(
            "--question",
            "Hi",
            PHI_ENDPOINT_URL=f"{url}/v1/chat/completions?api-version=2024-05-01-preview",
        )
    assert result.returncode == 0, result.stderr
    assert seen.requests[0]["path"] == CHAT_COMPLETIONS
    assert seen.requests[0]["query"] == {"api-version": "2024-05-01-preview"}


def test_the_key_goes_only_as_bearer_to_the_urls_host_whatever_the_environment() -> None:
    with openai_server() as (elsewhere, stray), openai_server(Seen(key=KEY)) as (url, seen):
        result = run_chat(
            "--question",
            "Hi",
            PHI_ENDPOINT_URL=url,
            PHI_ENDPOINT_KEY=KEY,
            OPENAI_BASE_URL=f"{elsewhere}/v1",
            **AMBIENT,
        )
    assert result.returncode == 0, result.stderr
    assert stray.requests == []
    [request] = seen.requests
    headers = request["headers"]
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["host"] == url.removeprefix("http://")
    assert [name for name, value in headers.items() if KEY in value] == ["authorization"]
    assert KEY not in request["raw"]
    assert not {"openai-organization", "openai-project", "x-ambient"} & set(headers)
    sent = json.dumps(headers) + request["raw"]
    assert [secret for secret in AMBIENT_SECRETS if secret in sent] == []


def test_without_a_key_no_authorization_is_sent() -> None:
    with openai_server() as (url, seen):
        result = run_chat("--question", "Hi", PHI_ENDPOINT_URL=url, **AMBIENT)
    assert result.returncode == 0, result.stderr
    assert "authorization" not in seen.headers()


def test_the_model_is_phi_or_phi_endpoint_model() -> None:
    with openai_server() as (url, seen):
        named = run_chat("--question", "Hi", PHI_ENDPOINT_URL=url, PHI_ENDPOINT_MODEL="phi")
        other = run_chat("--question", "Hi", PHI_ENDPOINT_URL=url, PHI_ENDPOINT_MODEL="gpt-4o")
    assert named.returncode == 0, named.stderr
    assert [r["body"]["model"] for r in seen.requests] == ["phi", "gpt-4o"]
    line = one_line_error(other)
    assert "HTTP 404" in line
    assert 'model "gpt-4o" is not served here' in line


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_reported_never_followed(status: int) -> None:
    with openai_server() as (elsewhere, stray):
        target = elsewhere.replace("127.0.0.1", "localhost") + CHAT_COMPLETIONS
        script: list[Reply] = [(status, {"Location": target}, {})]
        with openai_server(Seen(key=KEY, script=script)) as (url, seen):
            result = run_chat("--question", "Hi", PHI_ENDPOINT_URL=url, PHI_ENDPOINT_KEY=KEY)
    line = one_line_error(result, KEY)
    assert f"redirect (HTTP {status}) to {target}; not followed" in line
    assert len(seen.requests) == 1
    assert stray.requests == []


def test_a_wrong_key_is_one_line_without_the_key() -> None:
    wrong = "wrong-key-1d2e"
    with openai_server(Seen(key=KEY)) as (url, seen):
        result = run_chat("--question", "Hi", PHI_ENDPOINT_URL=url, PHI_ENDPOINT_KEY=wrong)
    assert "rejected the key (HTTP 401)" in one_line_error(result, wrong)
    assert len(seen.requests) == 1  # 401 is not retried
    assert seen.headers()["authorization"] == f"Bearer {wrong}"


def test_a_key_the_endpoint_echoes_is_masked() -> None:
    echo = {"error": {"message": f"bad request from {KEY}", "type": "invalid_request_error"}}
    with openai_server(Seen(script=[(400, {}, echo)])) as (url, _):
        result = run_chat("--question", "Hi", PHI_ENDPOINT_URL=url, PHI_ENDPOINT_KEY=KEY)
    line = one_line_error(result, KEY)
    assert "refused the request (HTTP 400): bad request from ***" in line


def test_a_wrong_path_is_a_clear_404() -> None:
    with openai_server() as (url, _):
        result = run_chat("--question", "Hi", PHI_ENDPOINT_URL=f"{url}/score")
    assert "(HTTP 404)" in one_line_error(result)


def test_503_is_retried() -> None:
    busy = {"error": {"message": "busy", "type": "server_error"}}
    with openai_server(Seen(script=[(503, {"Retry-After": "0"}, busy)])) as (url, seen):
        result = run_chat("--question", "Hi", PHI_ENDPOINT_URL=url)
    assert result.returncode == 0, result.stderr
    assert len(seen.requests) == 2


def test_an_answer_outside_the_api_is_one_line() -> None:
    with openai_server(Seen(script=[(200, {}, {"output": "the scoring contract"})])) as (url, _):
        result = run_chat("--question", "Hi", PHI_ENDPOINT_URL=url)
    one_line_error(result)


def test_a_refused_connection_is_one_line() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    result = run_chat("--question", "Hi", "--timeout", "30", PHI_ENDPOINT_URL=url, **AMBIENT)
    line = one_line_error(result, *AMBIENT_SECRETS)
    assert f"cannot reach {url}: check the URL" in line


def test_one_deadline_holds_against_a_server_that_never_answers() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        started = time.monotonic()
        result = run_chat("--question", "Hi", "--timeout", "2", PHI_ENDPOINT_URL=url)
        elapsed = time.monotonic() - started
    assert "no answer within 2 s" in one_line_error(result)
    # The process start included; without the one deadline the SDK's retries of a read
    # timeout would take 4 x 2 s and more.
    assert elapsed < 7


def test_the_ambient_openai_environment_is_left_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in AMBIENT.items():
        monkeypatch.setenv(name, value)
    with openai_server() as (url, _):
        text = asyncio.run(
            chat.answer(EndpointClient(url, api="chat-completions"), chat.ChatRequest("Hi"))
        )
    assert text == "2 messages; last: Hi"
    assert {name: os.environ.get(name) for name in AMBIENT} == AMBIENT


@pytest.mark.parametrize("api", ["chat-completions", "score"])
def test_one_workflow_per_run_lets_runs_overlap(api: str) -> None:
    async def both(url: str) -> list[str]:
        client = EndpointClient(url, api=api)
        return list(
            await asyncio.gather(
                chat.answer(client, chat.ChatRequest("one")),
                chat.answer(client, chat.ChatRequest("two")),
            )
        )

    server = openai_server() if api == "chat-completions" else contract_server()
    with server as (url, _):
        assert asyncio.run(both(url)) == ["2 messages; last: one", "2 messages; last: two"]


# Our EndpointChatClient, on the scoring contract (PHI_ENDPOINT_API=score).


def test_on_score_history_becomes_messages_and_the_flows_parameters_are_sent() -> None:
    with contract_server(Recorded(key=KEY)) as (url, recorded):
        text = asyncio.run(
            chat.answer(
                EndpointClient(url, key=KEY, api="score"), chat.ChatRequest(QUESTION, HISTORY)
            )
        )
    assert text == f"4 messages; last: {QUESTION}"
    [request] = recorded.requests
    messages = request["input_data"]["input_string"]
    assert messages == history_messages(HISTORY, QUESTION, DEFAULTS.system_prompt)
    assert request["input_data"]["parameters"] == {
        "temperature": DEFAULTS.temperature,
        "max_new_tokens": DEFAULTS.max_new_tokens,
    }
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"


def test_on_score_the_script_answers() -> None:
    with contract_server(Recorded(key=KEY)) as (url, recorded):
        result = run_chat(
            *("--question", QUESTION, "--chat-history", json.dumps(HISTORY), "--json"),
            PHI_ENDPOINT_URL=url,
            PHI_ENDPOINT_KEY=KEY,
            PHI_ENDPOINT_API="score",
        )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"answer": f"4 messages; last: {QUESTION}"}
    assert len(recorded.requests) == 1


def test_on_score_429_is_retried() -> None:
    recorded = Recorded(script=[(429, {"Retry-After": "0"}, {"message": "busy"})])
    with contract_server(recorded) as (url, seen):
        result = run_chat(
            "--question", "Hi", "--json", PHI_ENDPOINT_URL=url, PHI_ENDPOINT_API="score"
        )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"answer": "2 messages; last: Hi"}
    assert len(seen.requests) == 2


def test_on_score_a_wrong_key_fails_clearly_without_showing_it() -> None:
    wrong = "wrong-key-9e7b"
    with contract_server(Recorded(key=KEY)) as (url, _):
        result = run_chat(
            "--question",
            "Hi",
            PHI_ENDPOINT_URL=url,
            PHI_ENDPOINT_KEY=wrong,
            PHI_ENDPOINT_API="score",
        )
    assert "rejected the key (HTTP 401)" in one_line_error(result, wrong)


def test_on_score_a_redirect_is_reported_never_followed() -> None:
    recorded = Recorded(key=KEY, script=[(302, {"Location": "http://elsewhere/"}, {})])
    with contract_server(recorded) as (url, seen):
        result = run_chat(
            "--question", "Hi", PHI_ENDPOINT_URL=url, PHI_ENDPOINT_KEY=KEY, PHI_ENDPOINT_API="score"
        )
    assert "http://elsewhere/" in one_line_error(result, KEY)
    assert len(seen.requests) == 1


# Settings, and the old entry point.


@pytest.mark.parametrize(
    ("args", "variables", "message"),
    [
        ([], {}, "no endpoint: set PHI_ENDPOINT_URL"),
        (
            ["--chat-history", "{"],
            {"PHI_ENDPOINT_URL": "http://127.0.0.1:9/v1"},
            "--chat-history is not JSON",
        ),
        (
            [],
            {"PHI_ENDPOINT_URL": "http://127.0.0.1:9/score", "PHI_ENDPOINT_API": "grpc"},
            "PHI_ENDPOINT_API='grpc'",
        ),
        ([], {"PHI_ENDPOINT_URL": "127.0.0.1:5001/v1"}, "must be an http(s) URL"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    args: list[str], variables: dict[str, str], message: str
) -> None:
    result = run_chat("--question", "Hi", *args, **variables)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_old_module_name_still_answers_and_names_the_new_one() -> None:
    with openai_server() as (url, _):
        result = subprocess.run(
            [sys.executable, "-m", "flow.maf", "--question", "Hi"],
            cwd=AGENT_CHAT.parents[2],
            env={**os.environ, "PHI_ENDPOINT_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2 messages; last: Hi"
    assert "`python -m flow.maf` is now `phi chat --agent`" in result.stderr


def test_the_old_module_names_where_its_outputs_option_went() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flow.maf", "--outputs", "outputs.json"],
        cwd=AGENT_CHAT.parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    *_, line = result.stderr.strip().splitlines()  # after the alias's note
    assert line.startswith(
        'flow.maf: error: --outputs is now `phi chat --agent --outputs FILE "QUESTION"`'
    )
