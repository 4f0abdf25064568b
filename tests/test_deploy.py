"""`phi deploy`: the dry run loads with azure-ai-ml; blue/green never leaves 0 % traffic."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.ai.ml import load_online_deployment
from azure.ai.ml.entities import ManagedOnlineDeployment

from finetune_phi.cli.main import main
from finetune_phi.cloud.deploy.managed import (
    PROBE_INITIAL_DELAY_S,
    DeployRequest,
    RolloutError,
    rollout,
)
from finetune_phi.core import state
from finetune_phi.core.azure_facts import AZURE_TORCH, VM_SIZES
from finetune_phi.core.errors import PhiError, UsageError
from tests.support import ACCEPTED_RISK

NO_CHECKS = ["deploy", "--outputs", "outputs.json", "--no-verify", *ACCEPTED_RISK]
OUTPUTS = {
    "subscriptionId": "sub-1",
    "resourceGroupName": "rg-phi-dev",
    "workspaceName": "mlw-phi-dev",
    "endpointName": "phi-dev-abc123",
    "identityClientId": "client-of-id-phi-dev",
}


@pytest.fixture
def outputs_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(OUTPUTS))
    return path


def dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[Any]:
    assert main(["deploy", "--outputs", "outputs.json", "--dry-run", *args]) == 0
    documents = capsys.readouterr().out.split("---\n")
    (tmp_path / "deployment.yaml").write_text(documents[1])
    return [
        yaml.safe_load(documents[0]),
        load_online_deployment(tmp_path / "deployment.yaml"),
        yaml.safe_load(documents[2]),
    ]


def test_dry_run_deployment_loads_with_azure_ai_ml(
    outputs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, deployment, plan = dry_run(
        tmp_path, capsys, "--job", "sft-job-1", "--instance-count", "2"
    )
    assert model["path"] == "azureml://jobs/sft-job-1/outputs/model"
    assert model["type"] == "mlflow_model"
    assert isinstance(deployment, ManagedOnlineDeployment)
    assert deployment.endpoint_name == "phi-dev-abc123"
    assert deployment.instance_type == "Standard_NC4as_T4_v3"
    assert deployment.instance_count == 2
    assert deployment.code_configuration is not None
    assert deployment.code_configuration.scoring_script == "score.py"
    assert deployment.liveness_probe is not None
    assert deployment.readiness_probe is not None
    assert deployment.liveness_probe.initial_delay == PROBE_INITIAL_DELAY_S
    assert deployment.readiness_probe.initial_delay == PROBE_INITIAL_DELAY_S
    assert deployment.request_settings is not None
    assert deployment.request_settings.request_timeout_ms == 90_000
    assert deployment.environment_variables["AZURE_CLIENT_ID"] == "client-of-id-phi-dev"
    environment: Any = deployment.environment
    pip = environment.conda_file["dependencies"][2]["pip"]
    assert any(p.startswith("azureml-inference-server-http==") for p in pip)
    assert f"torch=={AZURE_TORCH.version}" in pip
    assert any(p.startswith("nvidia-cudnn-cu12==") for p in pip)
    assert plan["endpoint"] == "phi-dev-abc123"


def test_cpu_profile_is_the_tutorials_cpu_instance(
    outputs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, deployment, _ = dry_run(tmp_path, capsys, "--job", "j", "--profile", "cpu")
    assert deployment.instance_type == "Standard_E4s_v3"


def test_the_job_defaults_to_the_last_one_submitted(
    outputs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state.record("sub-1/rg-phi-dev/mlw-phi-dev", "last_finetune_job", "recorded-job-7")
    model, _, _ = dry_run(tmp_path, capsys)
    assert model["path"] == "azureml://jobs/recorded-job-7/outputs/model"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no fine-tune job recorded"),
        (["--job", "j", "--instance-count", "0"], "--instance-count 0: must be between 1 and 20"),
        (["--job", "j", "--instance-type", "NC6"], "--instance-type 'NC6'"),
        (["--job", "j", "--request-timeout-ms", "500000"], "between 1000 and 180000"),
        (["--job", "bad job"], "--job 'bad job'"),
        (
            ["--job", "j", "--instance-type", "Standard_XYZ"],
            "phi: error: --instance-type 'Standard_XYZ': not a VM size in "
            "src/finetune_phi/core/azure_facts.py; one of Standard_NC4as_T4_v3, ",
        ),
        (
            ["--job", "j", "--instance-type", "Standard_NC6s_v3"],
            "phi: error: --instance-type Standard_NC6s_v3 was retired by Azure on 2025-09-30; "
            "use Standard_NC24ads_A100_v4 (training) or Standard_NC4as_T4_v3 (serving)",
        ),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_sent(
    outputs_file: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["deploy", "--outputs", "outputs.json", "--dry-run", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


class Poller:
    def __init__(self, action: Any = None) -> None:
        self.action = action

    def result(self) -> Any:
        return self.action() if self.action else None


@dataclass
class FakeEndpoint:
    name: str
    traffic: dict[str, int] = field(default_factory=dict)


@dataclass
class FakeDeployment:
    name: str
    provisioning_state: str = "Succeeded"


class FakeService:
    """Azure ML's side of the rollout: endpoint traffic, deployments, model versions."""

    def __init__(self, traffic: dict[str, int], healthy: bool = True) -> None:
        self.endpoint = FakeEndpoint("phi-dev-abc123", dict(traffic))
        self.deployments = {name: FakeDeployment(name) for name in traffic}
        self.healthy = healthy
        self.traffic_history = [dict(traffic)]
        self.events: list[str] = []
        self.versions = 0
        self.endpoint_deleted = False


class FakeMlClient:
    def __init__(self, service: FakeService) -> None:
        self.online_endpoints = Endpoints(service)
        self.online_deployments = Deployments(service)
        self.models = Models(service)


class Endpoints:
    def __init__(self, service: FakeService) -> None:
        self.service = service

    def get(self, name: str) -> FakeEndpoint:
        return FakeEndpoint(name, dict(self.service.endpoint.traffic))

    def begin_create_or_update(self, endpoint: FakeEndpoint) -> Poller:
        def apply() -> None:
            for name in endpoint.traffic:
                assert name in self.service.deployments, f"traffic to missing deployment {name}"
            self.service.endpoint.traffic = dict(endpoint.traffic)
            self.service.traffic_history.append(dict(endpoint.traffic))
            self.service.events.append(f"traffic {endpoint.traffic}")

        return Poller(apply)

    def begin_delete(self, name: str) -> Poller:
        self.service.endpoint_deleted = True
        return Poller()


class Deployments:
    def __init__(self, service: FakeService) -> None:
        self.service = service

    def list(self, endpoint_name: str) -> list[FakeDeployment]:
        return list(self.service.deployments.values())

    def get(self, name: str, endpoint_name: str) -> FakeDeployment:
        return self.service.deployments[name]

    def begin_create_or_update(self, deployment: Any) -> Poller:
        def apply() -> None:
            assert deployment.model.startswith("azureml:phi-finetuned:")
            self.service.events.append(f"create {deployment.name}")
            self.service.deployments[deployment.name] = FakeDeployment(
                deployment.name, "Succeeded" if self.service.healthy else "Failed"
            )
            if not self.service.healthy:
                raise RuntimeError("ResourceOperationFailure: liveness probe failed\nmore detail")

        return Poller(apply)

    def begin_delete(self, name: str, endpoint_name: str) -> Poller:
        def apply() -> None:
            assert self.service.endpoint.traffic.get(name, 0) == 0, (
                "deleting a deployment with traffic"
            )
            del self.service.deployments[name]
            self.service.events.append(f"delete {name}")

        return Poller(apply)


class Models:
    def __init__(self, service: FakeService) -> None:
        self.service = service

    def create_or_update(self, model: Any) -> Any:
        self.service.versions += 1
        model.version = str(self.service.versions)
        return model


def deploy_to(service: FakeService, gate: Callable[[str], None] | None = None) -> str:
    return rollout(
        FakeMlClient(service),
        DeployRequest(job="job-1"),
        gate=gate,
        endpoint_name="phi-dev-abc123",
        identity_client_id="client",
        log=lambda _: None,
    )


def test_first_deploy_creates_blue_and_routes_all_traffic() -> None:
    service = FakeService({})
    assert deploy_to(service) == "blue"
    assert service.endpoint.traffic == {"blue": 100}
    assert service.events == ["create blue", "traffic {'blue': 100}"]


def test_redeploy_goes_green_beside_blue_and_never_drops_to_zero() -> None:
    service = FakeService({"blue": 100})
    assert deploy_to(service) == "green"
    assert [event.split()[0] for event in service.events] == ["create", "traffic", "delete"]
    assert service.events[0] == "create green"
    assert service.events[2] == "delete blue"
    assert service.endpoint.traffic == {"blue": 0, "green": 100}
    assert set(service.deployments) == {"green"}
    assert all(sum(traffic.values()) == 100 for traffic in service.traffic_history)
    assert not service.endpoint_deleted
    # and back again
    assert deploy_to(service) == "blue"
    assert set(service.deployments) == {"blue"}
    assert all(sum(traffic.values()) == 100 for traffic in service.traffic_history)


def test_an_unhealthy_deployment_leaves_traffic_on_the_old_one() -> None:
    service = FakeService({"blue": 100}, healthy=False)
    with pytest.raises(RolloutError) as caught:
        deploy_to(service)
    message = str(caught.value)
    assert "deployment green did not become healthy" in message
    assert "liveness probe failed" in message
    assert "traffic is unchanged ({'blue': 100})" in message
    assert "az ml online-deployment get-logs --endpoint-name phi-dev-abc123 --name green" in message
    assert service.endpoint.traffic == {"blue": 100}
    assert "blue" in service.deployments
    assert service.traffic_history == [{"blue": 100}]


def test_a_stale_failed_deployment_without_traffic_is_replaced() -> None:
    service = FakeService({"blue": 100})
    service.deployments["green"] = FakeDeployment("green", "Failed")
    service.endpoint.traffic = {"blue": 100, "green": 0}
    assert deploy_to(service) == "green"
    assert service.endpoint.traffic == {"blue": 0, "green": 100}
    assert set(service.deployments) == {"green"}


def test_a_rollout_that_loses_a_race_never_replaces_the_live_deployment() -> None:
    """Another `phi deploy` finishes between this one's choice of colour and its create."""
    service = FakeService({"blue": 100})
    client = FakeMlClient(service)
    reads = {"count": 0}
    plain_get = client.online_endpoints.get

    def get(name: str) -> FakeEndpoint:
        reads["count"] += 1
        if reads["count"] == 2:  # this rollout has chosen green; the other one runs now
            assert deploy_to(service) == "green"
        return plain_get(name)

    client.online_endpoints.get = get  # type: ignore[method-assign]
    with pytest.raises(RolloutError, match="began taking traffic while this rollout ran"):
        rollout(
            client,
            DeployRequest(job="job-2"),
            endpoint_name="phi-dev-abc123",
            identity_client_id="c",
            log=lambda _: None,
        )
    assert service.events.count("create green") == 1
    assert service.endpoint.traffic == {"blue": 0, "green": 100}


def test_a_second_concurrent_deploy_from_this_folder_fails_clearly(
    outputs_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_client(*_: object) -> None:
        raise AssertionError("nothing may be sent")

    monkeypatch.setattr("finetune_phi.core.stack_outputs.Workspace.client", no_client)
    with state.locked("deploy-phi-dev-abc123"):
        assert main([*NO_CHECKS, "--job", "j1"]) == 2
    assert "another phi command holds" in capsys.readouterr().err


def test_a_corrupt_state_file_names_itself_and_the_fix(
    outputs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state.state_file().parent.mkdir(parents=True, exist_ok=True)
    state.state_file().write_text("{not json")
    assert main(["deploy", "--outputs", "outputs.json", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{state.state_file()} is not valid JSON: fix it, or delete it" in err
    assert "Traceback" not in err


PARALLEL_WRITES = """
import sys
from finetune_phi.core import state
for n in range(int(sys.argv[2])):
    state.record(f"workspace-{sys.argv[1]}", f"key-{n}", n)
"""


def test_parallel_records_all_survive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    monkeypatch.setenv("PHI_STATE_DIR", str(tmp_path))
    writers = [
        subprocess.Popen([sys.executable, "-c", PARALLEL_WRITES, str(w), "50"]) for w in range(4)
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]
    data = json.loads((tmp_path / "state.json").read_text())
    assert sum(len(entries) for entries in data.values()) == 200


HOLD_THE_LOCK = """
import sys
from finetune_phi.core import state
with state.locked(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_another_process_holding_a_lock_keeps_this_one_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys
    import time

    monkeypatch.setenv("PHI_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(state, "WAIT_SECONDS", 1.0)
    name = "deploy-phi-dev-abc123"
    message = f"another phi command holds {tmp_path / name}.lock; wait for it to finish"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline() == "held\n"
        started = time.monotonic()
        with pytest.raises(UsageError, match=re.escape(message)), state.locked(name, wait=False):
            pass
        assert time.monotonic() - started < 0.5  # at once, without waiting
        started = time.monotonic()  # waiting, it gives up after WAIT_SECONDS
        with pytest.raises(UsageError, match=re.escape(message)), state.locked(name):
            pass
        assert time.monotonic() - started >= 1.0
    finally:
        holder.communicate("done\n", timeout=30)
    with state.locked(name, wait=False):  # released with its holder
        pass


def test_a_deployment_that_fails_its_check_takes_no_traffic() -> None:
    """`phi deploy --verify-model`: the gate runs on the healthy new deployment, before any
    traffic moves; its failure leaves traffic where it was."""
    service = FakeService({"blue": 100})
    checked: list[str] = []

    def gate(deployment: str) -> None:
        checked.append(f"{deployment} {sorted(service.deployments)} {service.endpoint.traffic}")
        raise PhiError("the served model answers unlike the trained one: 40% agreement")

    with pytest.raises(RolloutError) as caught:
        deploy_to(service, gate)
    assert checked == ["green ['blue', 'green'] {'blue': 100}"]
    assert "deployment green is healthy but failed its check" in str(caught.value)
    assert "40% agreement" in str(caught.value)
    assert service.traffic_history == [{"blue": 100}]


def test_a_deployment_that_passes_its_check_takes_the_traffic() -> None:
    service = FakeService({"blue": 100})
    checked: list[str] = []
    live = deploy_to(service, checked.append)
    assert (live, checked, service.endpoint.traffic) == (
        "green",
        ["green"],
        {"blue": 0, "green": 100},
    )


def test_an_unknown_size_is_refused_listing_every_size_the_table_knows_but_the_retired(
    outputs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            ["deploy", "--outputs", "outputs.json", "--job", "j", "--instance-type", "Standard_XYZ"]
        )
        == 2
    )
    [line] = capsys.readouterr().err.splitlines()
    listed = line.split("; one of ")[1].split(", ")
    assert listed == [name for name, size in VM_SIZES.items() if size.retired is None]
    assert "Standard_NC6s_v3" not in listed


def test_serverless_delete_dry_run_prints_what_delete_sends_not_the_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    # only what --delete needs: no location, no project workspace id
    (tmp_path / "outputs.json").write_text(
        json.dumps({**OUTPUTS, "environment": "dev", "foundryProjectName": "proj-phi-dev"})
    )
    base = ["deploy", "--outputs", "outputs.json", "--serverless", "--delete", "--dry-run"]
    assert main(base) == 0
    assert yaml.safe_load(capsys.readouterr().out) == [
        {"delete": "serverless endpoint", "name": "phi-ft-dev", "project": "proj-phi-dev"},
        {
            "archive": "model",
            "name": "phi-finetuned",
            "version": "<latest version at delete time>",
        },
    ]
    assert main([*base, "--model-version", "4", "--endpoint-name", "phi-ft-x"]) == 0
    steps = yaml.safe_load(capsys.readouterr().out)
    assert steps[0]["name"] == "phi-ft-x"
    assert steps[1]["version"] == "4"


def test_serverless_delete_archives_the_version_its_dry_run_names() -> None:
    from finetune_phi.cloud.deploy.serverless import ServerlessRequest, delete

    events: list[str] = []

    class Service:
        class models:  # noqa: N801 - azure-ai-ml's attribute name
            @staticmethod
            def get(name: str, label: str) -> Any:
                raise AssertionError("--model-version names the version: no lookup")

            @staticmethod
            def archive(name: str, version: str) -> None:
                events.append(f"archive {name}:{version}")

        class serverless_endpoints:  # noqa: N801
            @staticmethod
            def begin_delete(name: str) -> Poller:
                events.append(f"delete {name}")
                return Poller()

    delete(Service(), ServerlessRequest("phi-ft-dev", model_version=4), log=lambda _: None)
    assert events == ["delete phi-ft-dev", "archive phi-finetuned:4"]


SERVERLESS_OUTPUTS = {
    **OUTPUTS,
    "environment": "dev",
    "location": "eastus2",
    "foundryProjectName": "proj-phi-dev",
    "foundryProjectWorkspaceId": "0f8fad5b-d9cb-469f-a165-70867728950e",
}


def test_serverless_deploy_says_the_hourly_hosting_fee_on_stderr_before_creating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deployed fine-tuned model bills an hourly hosting fee even when idle (azure-ai-docs
    foundry-classic/how-to/fine-tune-serverless.md, 01/28/2026): one line says so, before
    the endpoint is created, and how to delete it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PHI_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "outputs.json").write_text(json.dumps(SERVERLESS_OUTPUTS))
    said_before: list[str] = []

    class Endpoint:
        scoring_uri = "https://phi-ft-dev.eastus2.models.ai.azure.com"

    class Service:
        class models:  # noqa: N801 - azure-ai-ml's attribute name
            @staticmethod
            def get(name: str, label: str) -> Any:
                return type("Model", (), {"version": "3"})()

        class serverless_endpoints:  # noqa: N801
            @staticmethod
            def begin_create_or_update(endpoint: Any) -> Poller:
                said_before.append(capsys.readouterr().err)
                return Poller(lambda: Endpoint())

    monkeypatch.setattr("finetune_phi.core.stack_outputs.Workspace.client", lambda _: Service())
    assert main(["deploy", "--outputs", "outputs.json", "--serverless"]) == 0
    [line] = said_before[0].splitlines()
    assert line.startswith("phi: note: a serverless deployment of a fine-tuned model bills an ")
    assert "hourly hosting fee for as long as it exists, even when idle" in line
    assert "see the model's pricing page" in line
    assert line.endswith("phi deploy --serverless --delete --endpoint-name phi-ft-dev")
    assert "serverless endpoint phi-ft-dev: https://" in capsys.readouterr().out


def test_the_serverless_dry_run_says_the_fee_too_but_delete_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs.json").write_text(json.dumps(SERVERLESS_OUTPUTS))
    base = ["deploy", "--outputs", "outputs.json", "--serverless", "--dry-run"]
    assert main(base) == 0
    [line] = capsys.readouterr().err.splitlines()
    assert "hourly hosting fee" in line
    assert main([*base, "--delete"]) == 0
    assert capsys.readouterr().err == ""
