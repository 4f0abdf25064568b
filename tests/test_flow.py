"""The real flow under the real `pf`, against a local endpoint that speaks the contract."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from finetune_phi.cli.main import main
from finetune_phi.local.serve import free_port
from tests.contract_server import Recorded, contract_server
from tests.support import (
    BIN,
    PROMPT_FLOW,
    answer_of,
    connect,
    flow_copy,
    flow_test,
    port_is_free,
)

KEY = "right-key-5c1d"
HISTORY = [
    {"inputs": {"question": "What is the capital of France?"}, "outputs": {"answer": "Paris."}},
]


@pytest.fixture(autouse=True)
def in_a_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs from a folder of its own: `phi flow connect` writes Prompt flow's project
    settings (pf.yaml) into the folder it runs from, which is not to be the checkout."""
    monkeypatch.chdir(tmp_path)


def test_the_flow_sends_history_as_messages_with_the_key(
    pf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with contract_server(Recorded(key=KEY)) as (endpoint, recorded):
        connect(endpoint, KEY, pf_env)
        result = flow_test(pf_env, "Which river flows through it?", HISTORY)
    assert result.returncode == 0, result.stderr
    assert answer_of(result) == "4 messages; last: Which river flows through it?"
    [request] = recorded.requests
    assert [m["role"] for m in request["input_data"]["input_string"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    assert request["input_data"]["input_string"][2]["content"] == "Paris."
    assert request["input_data"]["parameters"] == {"temperature": 0.7, "max_new_tokens": 256}
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"


def test_the_flow_retries_after_429(
    pf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    busy = (429, {"Retry-After": "1"}, {"message": "Too many requests"})
    with contract_server(Recorded(script=[busy])) as (endpoint, recorded):
        connect(endpoint, KEY, pf_env)
        result = flow_test(pf_env, "Who founded Microsoft?", [])
    assert result.returncode == 0, result.stderr
    assert answer_of(result) == "2 messages; last: Who founded Microsoft?"
    assert len(recorded.requests) == 2


def test_a_wrong_key_fails_clearly_without_showing_it(
    pf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-key-9e7b"
    with contract_server(Recorded(key=KEY)) as (endpoint, _):
        connect(endpoint, wrong, pf_env)
        result = flow_test(pf_env, "Hi", [])
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "rejected the key (HTTP 401)" in output
    assert wrong not in output


def test_pf_flow_serve_answers_over_http(
    pf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    with contract_server(Recorded(key=KEY)) as (endpoint, _):
        connect(endpoint, KEY, pf_env)
        server = subprocess.Popen(
            [
                str(BIN / "pf"),
                "flow",
                "serve",
                "--source",
                str(flow_copy(pf_env)),
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--skip-open-browser",
            ],
            env=pf_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            body = json.dumps(
                {"question": "Which river flows through it?", "chat_history": HISTORY}
            ).encode()
            deadline, answer = time.monotonic() + 90, None
            while answer is None and time.monotonic() < deadline:
                assert server.poll() is None, "pf flow serve exited"
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/score",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        answer = json.loads(response.read())
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(1)
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert answer == {"answer": "4 messages; last: Which river flows through it?"}


def test_connect_with_endpoint_needs_the_key_variable(
    pf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PHI_ENDPOINT_KEY", raising=False)
    assert main(["flow", "connect", "--endpoint", "http://127.0.0.1:5001/score"]) == 2
    assert "$PHI_ENDPOINT_KEY" in capsys.readouterr().err


def test_the_flow_folder_names_its_connection_and_holds_no_secret() -> None:
    dag = yaml.safe_load((PROMPT_FLOW / "flow.dag.yaml").read_text())
    assert dag["$schema"].endswith("Flow.schema.json")
    assert dag["inputs"]["question"]["is_chat_input"] is True
    assert dag["inputs"]["chat_history"]["is_chat_history"] is True
    assert dag["outputs"]["answer"]["is_chat_output"] is True
    assert dag["nodes"][0]["inputs"]["connection"] == "phi3-endpoint"
    for path in PROMPT_FLOW.iterdir():
        if path.is_file():
            text = path.read_text()
            assert "inference.ml.azure.com" not in text
            assert not re.search(r"key[ \t]*[:=][ \t]*[\"']?[A-Za-z0-9+/=_-]{16,}", text, re.I)
    rows = [json.loads(line) for line in (PROMPT_FLOW / "data.jsonl").read_text().splitlines()]
    assert rows
    assert all({"question", "chat_history"} <= set(row) for row in rows)


PROMPT_FLOW_SERVICE_PORT = 23333
"""Where `pf` starts its tracing service (promptflow._sdk._constants.PF_SERVICE_DEFAULT_PORT)."""


def test_after_phi_flow_connect_the_documented_pf_flow_test_leaves_nothing_listening(
    pf_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Prompt flow home as a first-time user has it (no pf.yaml): `phi flow connect`, run
    from the project, switches telemetry and tracing off there, not in the home, and the
    documented `pf flow test` from the project starts no tracing service on 23333."""
    if not port_is_free(PROMPT_FLOW_SERVICE_PORT):
        pytest.skip(f"something else listens on {PROMPT_FLOW_SERVICE_PORT}")
    home = Path(pf_env["PF_HOME_DIRECTORY"])
    (home / "pf.yaml").unlink()  # the fixture's own quiet settings: not a first-time user's
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)  # `phi flow connect` and `pf flow test` inherit it
    try:
        with contract_server(Recorded(key=KEY)) as (endpoint, _):
            connect(endpoint, KEY, pf_env, cwd=project)
            result = flow_test(pf_env, "Who founded Microsoft?", [])
        assert result.returncode == 0, result.stderr
        assert answer_of(result) == "2 messages; last: Who founded Microsoft?"
        assert port_is_free(PROMPT_FLOW_SERVICE_PORT)
    finally:
        if not port_is_free(PROMPT_FLOW_SERVICE_PORT):  # the failure this test is for
            subprocess.run([str(BIN / "pf"), "service", "stop"], env=pf_env, check=False)
    settings = yaml.safe_load((project / "pf.yaml").read_text())
    assert settings["telemetry"]["enabled"] == "false"
    assert settings["trace"]["destination"] == "none"
    home_settings = home / "pf.yaml"
    if home_settings.exists():
        assert not {"telemetry", "trace"} & set(yaml.safe_load(home_settings.read_text()) or {})


def test_connect_warns_when_the_home_configuration_turns_tracing_back_on(
    pf_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(pf_env["PF_HOME_DIRECTORY"])
    (home / "pf.yaml").write_text("trace:\n  destination: local\n")
    monkeypatch.chdir(tmp_path)
    result = subprocess.run(
        [str(BIN / "phi"), "flow", "connect", "--endpoint", "http://127.0.0.1:9/score"],
        env={**pf_env, "PHI_ENDPOINT_KEY": KEY},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (
        f"prompt flow: telemetry.enabled=false trace.destination=none for `pf` run from {tmp_path}"
        in result.stdout
    )
    assert result.stderr == (
        "phi: warning: Prompt flow's home configuration sets trace.destination=local, which "
        "wins over the project's: pf config set telemetry.enabled=false trace.destination=none\n"
    )
