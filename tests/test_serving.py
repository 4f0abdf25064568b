"""The scoring contract over a real `phi serve` (azureml-inference-server-http) process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from finetune_phi.cli.main import main
from finetune_phi.core.azure_facts import VM_SIZES
from finetune_phi.local.processes import stop_group
from finetune_phi.local.serve import free_port, wait_until_healthy
from jobs.score import score
from jobs.score.contract import (
    MAX_BATCH,
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES,
    MAX_NEW_TOKENS,
    MAX_REQUEST_BYTES,
)
from tests.support import PHI, ROOT, SAMPLE, catalog_layout, port_is_free, serving


@pytest.fixture
def server(scoring_server: str) -> str:
    return scoring_server


def post(url: str, body: Any, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/score", data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


GREEDY = {"do_sample": False, "max_new_tokens": 12}


def test_chat_shape_answers_with_the_generated_text_only(server: str) -> None:
    question = "What is the capital of France?"
    status, answer = post(
        server,
        {
            "input_data": {
                "input_string": [{"role": "user", "content": question}],
                "parameters": GREEDY,
            }
        },
    )
    assert status == 200
    assert set(answer) == {"output"}
    assert answer["output"].strip()
    assert question not in answer["output"]
    assert "<|assistant|>" not in answer["output"]


def test_batch_shape_answers_one_text_per_question(server: str) -> None:
    status, answer = post(
        server, {"input_data": ["What is 3 times 3?", "Who founded Microsoft?"], "params": GREEDY}
    )
    assert status == 200
    assert isinstance(answer, list)
    assert len(answer) == 2
    assert all(isinstance(text, str) and text.strip() for text in answer)


def test_a_batch_is_answered_as_one_request_per_question_would_be(server: str) -> None:
    """Batched generation (left padding, attention mask) under greedy decoding gives each
    question the answer it gets alone, in the order asked."""
    rows = [json.loads(line)["messages"] for line in SAMPLE.read_text().splitlines()]
    questions = [next(m["content"] for m in row if m["role"] == "user") for row in rows]
    questions = questions[:MAX_BATCH]
    assert len(questions) == MAX_BATCH
    params = {"do_sample": False, "max_new_tokens": 24}
    status, batched = post(server, {"input_data": questions, "params": params})
    assert status == 200
    one_by_one = [post(server, {"input_data": [q], "params": params})[1][0] for q in questions]
    assert batched == one_by_one
    assert len(set(batched)) > 1, "the questions must get different answers for order to show"


def test_history_changes_the_answer(server: str) -> None:
    alone = [{"role": "user", "content": "Which river flows through Paris?"}]
    history = [
        {"role": "system", "content": "You are a concise, friendly assistant."},
        {"role": "user", "content": "What is the capital of Japan?"},
        {"role": "assistant", "content": "The capital of Japan is Tokyo."},
        *alone,
    ]
    params = {"do_sample": False, "max_new_tokens": 8}
    _, without = post(server, {"input_data": {"input_string": alone, "parameters": params}})
    status, with_history = post(
        server, {"input_data": {"input_string": history, "parameters": params}}
    )
    assert status == 200
    assert with_history["output"] != without["output"]


def test_sampling_parameters_are_accepted(server: str) -> None:
    params = {"temperature": 0.9, "top_p": 0.8, "max_new_tokens": 5, "do_sample": True}
    status, answer = post(
        server,
        {"input_data": {"input_string": [{"role": "user", "content": "Hi"}], "parameters": params}},
    )
    assert status == 200
    assert isinstance(answer["output"], str)


USER = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"question": "hi"}, "must be a JSON object with 'input_data'"),
        ({"input_data": 3}, "must be an object (chat) or a list of strings"),
        ({"input_data": {"input_string": []}}, "must be a non-empty list of messages"),
        ({"input_data": {"input_string": [{"role": "robot", "content": "x"}]}}, 'role is "robot"'),
        (
            {"input_data": {"input_string": [{"role": "user", "content": ""}]}},
            "content must be a non-empty string",
        ),
        (
            {"input_data": {"input_string": [{"role": "user", "content": 5}]}},
            "content must be a non-empty string",
        ),
        (
            {"input_data": {"input_string": [*USER, {"role": "assistant", "content": "a"}]}},
            "the last message must be the user's",
        ),
        (
            {"input_data": {"input_string": [*USER, {"role": "system", "content": "s"}, *USER]}},
            "only the first message may be a system message",
        ),
        (
            {
                "input_data": {
                    "input_string": USER,
                    "parameters": {"max_new_tokens": MAX_NEW_TOKENS + 1},
                }
            },
            f"1 to {MAX_NEW_TOKENS}",
        ),
        (
            {"input_data": {"input_string": USER, "parameters": {"max_new_tokens": "ten"}}},
            "must be a whole number",
        ),
        (
            {"input_data": {"input_string": USER, "parameters": {"temperature": 3}}},
            "temperature = 3 is out of range",
        ),
        (
            {"input_data": {"input_string": USER, "parameters": {"top_p": 0}}},
            "top_p = 0 is out of range",
        ),
        (
            {"input_data": {"input_string": USER, "parameters": {"do_sample": "yes"}}},
            "do_sample must be true or false",
        ),
        (
            {"input_data": {"input_string": USER, "parameters": {"beams": 4}}},
            "unknown parameter(s) beams",
        ),
        ({"input_data": {"input_string": USER, "extra": 1}}, "unknown key(s) extra"),
        ({"input_data": ["ok", ""]}, "list of non-empty strings"),
        ({"input_data": ["q"] * 17}, "1 to 16 questions"),
        ({"input_data": ["q"], "params": {"temperature": "hot"}}, "temperature must be a number"),
    ],
)
def test_bad_requests_get_400_with_a_reason(server: str, body: Any, reason: str) -> None:
    status, answer = post(server, body)
    assert status == 400
    assert reason in answer["error"]
    assert "Traceback" not in answer["error"]


def test_malformed_json_gets_400(server: str) -> None:
    status, answer = post(server, None, raw=b'{"input_data": [')
    assert status == 400
    assert "not valid JSON" in answer["error"]


def test_phi_chat_against_the_local_server(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "chat",
                "--url",
                server,
                "--greedy",
                "--max-new-tokens",
                "10",
                "What is the capital of Italy?",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip()


def test_phi_chat_reports_a_bad_request_clearly(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # the endpoint refused at run time (exit 1), not a usage error of phi (exit 2)
    assert main(["chat", "--url", server, "--max-new-tokens", "5000", "Hi"]) == 1
    assert "HTTP 400" in capsys.readouterr().err


def test_serve_refuses_a_folder_without_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--model", str(tmp_path)]) == 2
    assert "no MLmodel file" in capsys.readouterr().err


def test_phi_serve_listens_on_loopback_only(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    listening = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    addresses = [field for field in listening if field.endswith(f":{port}")]
    assert addresses
    assert all(address.startswith("127.0.0.1:") for address in addresses), listening


def test_health_and_other_clients_are_answered_during_a_long_generation(server: str) -> None:
    import socket
    import threading
    import time

    long = {
        "input_data": {
            "input_string": USER,
            "parameters": {"do_sample": False, "max_new_tokens": 1024},
        }
    }
    finished: list[float] = []
    generating = threading.Thread(target=lambda: finished.append(post(server, long)[0]))
    with socket.create_connection(("127.0.0.1", int(server.rsplit(":", 1)[1]))) as half:
        # A client that sends half a request and waits.
        half.sendall(b'POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"input')
        generating.start()
        time.sleep(0.3)
        started = time.monotonic()
        with urllib.request.urlopen(f"{server}/", timeout=10) as health:
            assert health.status == 200
        assert time.monotonic() - started < 2
        status, answer = post(server, {"input_data": {"input_string": USER, "parameters": GREEDY}})
        assert status == 200
        assert answer["output"]
    generating.join(timeout=120)
    assert finished == [200]


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (
            b'{"input_data": {"input_string": [{"role": "user", "content": "Hi"}], "parameters": {"temperature": NaN}}}',
            400,
            "NaN: JSON numbers must be finite",
        ),
        (
            b'{"input_data": ["q"], "params": {"max_new_tokens": ' + b"9" * 5000 + b"}}",
            400,
            "an integer of 5000 digits; at most 18",
        ),
        (b'{"input_data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested too deeply"),
        (b'{"input_data": ["\\ud800 lone"]}', 400, "not valid Unicode (a lone surrogate)"),
        (
            b'{"input_data": ["q"], "parameters": {"temperature": 0.1}}',
            400,
            "the batch shape takes its parameters in 'params'",
        ),
        (
            json.dumps(
                {
                    "input_data": {
                        "input_string": [{"role": "user", "content": "x" * (MAX_MESSAGE_CHARS + 1)}]
                    }
                }
            ).encode(),
            400,
            f"at most {MAX_MESSAGE_CHARS}",
        ),
        (
            json.dumps(
                {
                    "input_data": {
                        "input_string": [
                            {"role": "user", "content": "x"},
                            {"role": "assistant", "content": "y"},
                        ]
                        * 40
                        + [{"role": "user", "content": "q"}]
                    }
                }
            ).encode(),
            400,
            f"holds 81 messages; at most {MAX_MESSAGES}",
        ),
        (
            json.dumps(
                {
                    "input_data": ["q"] * 16,
                    "params": {"max_new_tokens": 8},
                    "x": "y" * (MAX_REQUEST_BYTES + 1),
                }
            ).encode(),
            413,
            f"at most {MAX_REQUEST_BYTES}",
        ),
        (
            json.dumps(
                {
                    "input_data": {
                        "input_string": [{"role": "user", "content": "word " * 6000}],
                        "parameters": {"max_new_tokens": 8},
                    }
                }
            ).encode(),
            400,
            "tokens after the chat template; at most 4088",
        ),
    ],
    ids=[
        "nan",
        "huge-integer",
        "deep-nesting",
        "lone-surrogate",
        "stray-parameters",
        "long-message",
        "many-messages",
        "too-large",
        "over-context",
    ],
)
def test_hostile_requests_get_a_reason_and_the_server_stays_up(
    server: str, raw: bytes, status: int, reason: str
) -> None:
    code, answer = post(server, None, raw=raw)
    assert code == status
    assert reason in answer["error"]
    with urllib.request.urlopen(f"{server}/", timeout=10) as health:
        assert health.status == 200


def test_phi_serve_starts_quietly_and_leaves_nothing_at_home(
    fine_tuned: Path, tmp_path: Path
) -> None:
    """Its banner and nothing else: no library's error line or traceback on the way up or
    down, and nothing written to the home folder (the old server left ~/.gunicorn)."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [*PHI, "serve", "--model", str(fine_tuned / "model"), "--port", str(port)],
            stdout=err,
            stderr=err,
            env={**os.environ, "HOME": str(home)},
            start_new_session=True,
        )
        try:
            wait_until_healthy(process, f"http://127.0.0.1:{port}/health", seconds=120)
            assert post(f"http://127.0.0.1:{port}", {"input_data": ["Hi"]})[0] == 200
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            stop_group(process)
    [banner] = stderr.read_text().splitlines()
    assert banner.startswith(f"phi serve: engine transformers on http://127.0.0.1:{port}")
    assert list(home.iterdir()) == []
    assert port_is_free(port)


def test_a_catalog_model_in_the_hftransformersv2_flavor_serves_the_same_answers(
    fine_tuned: Path, scoring_server: str, tmp_path: Path
) -> None:
    """The catalog pipeline saves a registry Phi model's fine-tune in the registry's flavor,
    hftransformersv2 (weights, tokenizer and config under data/: azureml-assets
    model_selector.py). The same weights in that layout answer as in ours."""
    catalog = catalog_layout(fine_tuned / "model", tmp_path / "catalog-model")
    questions = ["Who founded Microsoft?", "What is the capital of France?"]

    def answers(url: str) -> list[str]:
        import openai

        with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client:
            return [
                str(
                    client.chat.completions.create(
                        model="phi",
                        messages=[{"role": "user", "content": question}],
                        max_tokens=16,
                        temperature=0,
                    )
                    .choices[0]
                    .message.content
                )
                for question in questions
            ]

    with serving(catalog) as url:
        assert answers(url) == answers(scoring_server)


PHI_3_5_MINI = SimpleNamespace(  # microsoft/Phi-3.5-mini-instruct config.json
    num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, hidden_size=3072
)
PHI_4_MINI = SimpleNamespace(  # microsoft/Phi-4-mini-instruct config.json
    num_hidden_layers=32,
    num_attention_heads=24,
    num_key_value_heads=8,
    hidden_size=3072,
    head_dim=128,
)


def test_the_context_a_gpu_holds_follows_the_models_kv_cache() -> None:
    """The worked figure: Phi-3.5-mini in fp16 takes about 0.39 MB a token, so a 16 GB T4
    holding 7.6 GB of weights has room for 15-18 K tokens; Phi-4-mini's grouped keys and
    values take a third of that."""
    assert score.kv_cache_bytes_per_token(PHI_3_5_MINI, 2) == 393_216
    assert score.kv_cache_bytes_per_token(PHI_4_MINI, 2) == 131_072
    t4 = score.gpu_context(PHI_3_5_MINI, 2, 7_600_000_000, 16 * 10**9)
    assert 15_000 <= t4 <= 18_000
    assert score.gpu_context(PHI_4_MINI, 2, 7_600_000_000, 16 * 10**9) > 2.9 * t4
    assert score.gpu_context(PHI_3_5_MINI, 2, 16 * 10**9, 16 * 10**9) == 0  # no room at all


def test_the_documented_limits_per_size_are_the_arithmetics() -> None:
    page = (ROOT / "docs" / "reference" / "serving.md").read_text()
    for size in ("Standard_NC4as_T4_v3", "Standard_NV36ads_A10_v5", "Standard_NC24ads_A100_v4"):
        gpu = VM_SIZES[size].gpu_memory_gb * 10**9
        cells = [
            min(131_072, score.gpu_context(config, 2, int(3.8e9 * 2), gpu))
            for config in (PHI_3_5_MINI, PHI_4_MINI)
        ]
        row = next(line for line in page.splitlines() if line.startswith(f"| `{size}`"))
        assert [int(re.sub(r"\D", "", cell.split("(")[0])) for cell in row.split("|")[2:4]] == cells


def test_on_a_gpu_the_limit_names_the_vm_size(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    model = torch.nn.Linear(1000, 1000).half()  # 2 MB of weights
    model.config = SimpleNamespace(max_position_embeddings=131_072, **vars(PHI_4_MINI))  # type: ignore[assignment]
    gpu = SimpleNamespace(
        cuda=SimpleNamespace(
            is_available=lambda: True,
            get_device_properties=lambda index: SimpleNamespace(total_memory=2 * 10**9),
        )
    )
    monkeypatch.setenv("PHI_INSTANCE_TYPE", "Standard_NC4as_T4_v3")
    monkeypatch.delenv("PHI_MAX_CONTEXT_TOKENS", raising=False)
    tokens, why = score.context(model, gpu)
    assert tokens == (2 * 10**9 * 0.9 - 2_002_000) // 131_072
    assert why == "what the GPU of Standard_NC4as_T4_v3 holds next to the weights"
    monkeypatch.setenv("PHI_MAX_CONTEXT_TOKENS", "4096")
    assert score.context(model, gpu) == (4096, "PHI_MAX_CONTEXT_TOKENS on Standard_NC4as_T4_v3")


def test_a_conversation_longer_than_the_context_here_is_a_400_before_generating(
    fine_tuned: Path,
) -> None:
    import openai

    env = {"PHI_MAX_CONTEXT_TOKENS": "64", "PHI_INSTANCE_TYPE": "Standard_NC4as_T4_v3"}
    with (
        serving(fine_tuned / "model", environment=env) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model="phi", messages=[{"role": "user", "content": "word " * 80}], max_tokens=8
            )
        assert "at most 56 (PHI_MAX_CONTEXT_TOKENS on Standard_NC4as_T4_v3, 64 tokens" in str(
            refused.value
        )
        short = client.chat.completions.create(
            model="phi", messages=[{"role": "user", "content": "Hi"}], max_tokens=8
        )
        assert short.choices[0].message.content is not None
