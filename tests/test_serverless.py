"""`phi deploy --serverless`, and `phi chat` and the flow speaking chat-completions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml import load_serverless_endpoint

from finetune_phi.cli.main import main
from finetune_phi.cloud.deploy.serverless import ServerlessRequest, chat_url, delete, deploy
from tests.contract_server import Recorded, contract_server
from tests.support import answer_of, connect, flow_test

WORKSPACE_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
OUTPUTS = {
    "subscriptionId": "sub-1",
    "resourceGroupName": "rg-phi-dev",
    "location": "eastus2",
    "environment": "dev",
    "foundryProjectName": "proj-phi-dev",
    "foundryProjectWorkspaceId": WORKSPACE_ID,
}


def test_dry_run_endpoint_loads_with_azure_ai_ml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    assert main(["deploy", "--outputs", "outputs.json", "--serverless", "--dry-run"]) == 0
    (tmp_path / "endpoint.yaml").write_text(capsys.readouterr().out)
    endpoint = load_serverless_endpoint(tmp_path / "endpoint.yaml")
    assert endpoint.name == "phi-ft-dev"
    assert endpoint.auth_mode == "key"
    assert endpoint.model_id == (
        f"azureml://locations/eastus2/workspaces/{WORKSPACE_ID}/models/phi-finetuned"
        "/versions/<latest version at deploy time>"
    )
    exact = [
        "deploy",
        "--outputs",
        "outputs.json",
        "--serverless",
        "--dry-run",
        "--model-version",
        "4",
    ]
    assert main(exact) == 0
    assert (
        f"/workspaces/{WORKSPACE_ID}/models/phi-finetuned/versions/4\n" in capsys.readouterr().out
    )


def test_a_bad_endpoint_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    assert (
        main(
            [
                "deploy",
                "--outputs",
                "outputs.json",
                "--serverless",
                "--endpoint-name",
                "9-lives",
                "--dry-run",
            ]
        )
        == 2
    )
    assert "--endpoint-name '9-lives'" in capsys.readouterr().err


@dataclass
class FakeModel:
    name: str = "phi-finetuned"
    version: str = "3"


class FakeService:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.endpoints: dict[str, Any] = {}
        outer = self

        class Poller:
            def __init__(self, value: Any = None) -> None:
                self.value = value

            def result(self) -> Any:
                return self.value

        class Models:
            def get(self, name: str, label: str) -> FakeModel:
                assert label == "latest"
                return FakeModel(name)

            def archive(self, name: str, version: str) -> None:
                assert not outer.endpoints, "archiving a model an endpoint still serves"
                outer.events.append(f"archive {name}:{version}")

        class Endpoints:
            def begin_create_or_update(self, endpoint: Any) -> Poller:
                outer.events.append(f"create {endpoint.name} on {endpoint.model_id}")
                endpoint.scoring_uri = f"https://{endpoint.name}.eastus2.models.ai.azure.com"
                outer.endpoints[endpoint.name] = endpoint
                return Poller(endpoint)

            def begin_delete(self, name: str) -> Poller:
                outer.events.append(f"delete {name}")
                del outer.endpoints[name]
                return Poller()

        self.models = Models()
        self.serverless_endpoints = Endpoints()


def test_deploy_serves_the_latest_model_and_cleanup_deletes_the_endpoint_first() -> None:
    service = FakeService()
    request = ServerlessRequest("phi-ft-dev")
    url = deploy(service, request, "eastus2", WORKSPACE_ID, log=lambda _: None)
    assert url == "https://phi-ft-dev.eastus2.models.ai.azure.com/v1/chat/completions"
    delete(service, request, log=lambda _: None)
    assert service.events == [
        f"create phi-ft-dev on azureml://locations/eastus2/workspaces/{WORKSPACE_ID}/models/phi-finetuned/versions/3",
        "delete phi-ft-dev",
        "archive phi-finetuned:3",
    ]


def test_chat_urls() -> None:
    assert (
        chat_url("https://x.eastus2.models.ai.azure.com/")
        == "https://x.eastus2.models.ai.azure.com/v1/chat/completions"
    )
    assert chat_url("https://x/v1/chat/completions") == "https://x/v1/chat/completions"


def test_phi_chat_speaks_chat_completions(capsys: pytest.CaptureFixture[str]) -> None:
    with contract_server(Recorded(api="chat-completions")) as (url, recorded):
        assert (
            main(
                [
                    "chat",
                    "--url",
                    url,
                    "--api",
                    "chat-completions",
                    "--max-new-tokens",
                    "20",
                    "--greedy",
                    "Hi there",
                ]
            )
            == 0
        )
    assert capsys.readouterr().out.strip() == "1 messages; last: Hi there"
    [request] = recorded.requests
    assert request["messages"] == [{"role": "user", "content": "Hi there"}]
    assert (request["max_tokens"], request["temperature"]) == (20, 0)


def test_the_flow_speaks_chat_completions(pf_env: dict[str, str]) -> None:
    with contract_server(Recorded(api="chat-completions", key="k-3f9e")) as (url, recorded):
        connect(url, "k-3f9e", pf_env, api="chat-completions")
        result = flow_test(pf_env, "Who founded Microsoft?", [])
    assert result.returncode == 0, result.stderr
    assert answer_of(result) == "2 messages; last: Who founded Microsoft?"
    assert recorded.requests[0]["max_tokens"] == 256
