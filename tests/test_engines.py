"""Serving engines behind one registry: an engine registered there is offered by `--engine`,
served by `phi serve` and deployed by `phi deploy` as its spec says; and a client of the
stack's endpoints speaks what the endpoint speaks (the managed one: its live engine's
contract), whatever runs it."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from finetune_phi.cli.eval import model as eval_model
from finetune_phi.cli.main import main
from finetune_phi.cloud import endpoints
from finetune_phi.cloud.deploy.managed import (
    PROBE_INITIAL_DELAY_S,
    DeployRequest,
    record_live,
)
from finetune_phi.core import state
from finetune_phi.core.azure_facts import VLLM_IMAGE
from finetune_phi.core.errors import UsageError
from finetune_phi.core.folders import JOBS
from finetune_phi.core.stack_outputs import StackOutputs
from finetune_phi.evaluation.models import EndpointModel
from finetune_phi.serving import DEFAULT_ENGINE, ENGINES, transformers, vllm
from finetune_phi.serving.engine import (
    SERVED_MODEL,
    Container,
    Engine,
    LocalServer,
    ManagedDeployment,
    Probes,
)
from tests.contract_server import Recorded, contract_server
from tests.support import ACCEPTED_RISK
from tests.test_deploy import OUTPUTS, FakeMlClient, FakeService, dry_run

THROWAWAY = Engine(
    name="throwaway",
    summary="a test's container that speaks chat-completions",
    apis=("chat-completions",),
    local=LocalServer(
        command=lambda host, port: ["throwaway-server", "--host", host, "--port", str(port)],
        environment={"THROWAWAY_CACHE_GB": "1"},
        routes={"chat-completions": "/v1/chat/completions"},
    ),
    managed=ManagedDeployment(
        runtime=Container(
            image="example.azurecr.io/throwaway:1",
            port=8000,
            liveness_path="/health",
            readiness_path="/ready",
            scoring_path="/v1/chat/completions",
        ),
        environment_variables={"THROWAWAY_THREADS": "8"},
        max_concurrent_requests=16,
        probes=Probes(
            liveness_period_s=60, readiness_period_s=20, timeout_s=30, failure_threshold=40
        ),
    ),
)
WORKSPACE = "sub-1/rg-phi-dev/mlw-phi-dev"
KEY = "managed-k3y-7f2a"


@pytest.fixture
def throwaway(monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setitem(ENGINES, THROWAWAY.name, THROWAWAY)
    return THROWAWAY


@dataclass
class Found:
    scoring_uri: str = ""
    primary_key: str = ""


class FakeWorkspaceClient:
    """What the endpoint clients ask of Azure ML: the managed endpoint's keys; the serverless
    endpoint and its keys."""

    def __init__(self, serverless_uri: str) -> None:
        self.online_endpoints = self
        self.serverless_endpoints = self
        self.serverless_uri = serverless_uri

    def get_keys(self, name: str) -> Found:
        return Found(primary_key=KEY if name == "phi-dev-abc123" else "serverless-k3y")

    def get(self, name: str) -> Found:
        assert name == "phi-ft-dev"
        return Found(scoring_uri=self.serverless_uri)


MANAGED_URI = "https://phi-dev-abc123.eastus2.inference.ml.azure.com/score"
SERVERLESS_URI = "https://phi-ft-dev.eastus2.models.ai.azure.com"


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stack outputs with both endpoints, the serverless one recorded by `phi deploy`."""
    monkeypatch.chdir(tmp_path)
    values = {**OUTPUTS, "scoringUri": MANAGED_URI, "foundryProjectName": "proj-phi-dev"}
    (tmp_path / "outputs.json").write_text(json.dumps(values))
    monkeypatch.setattr(
        "finetune_phi.core.stack_outputs.Workspace.client",
        lambda _: FakeWorkspaceClient(SERVERLESS_URI),
    )
    state.record("sub-1/rg-phi-dev/proj-phi-dev", state.SERVERLESS_ENDPOINT, "phi-ft-dev")
    return tmp_path / "outputs.json"


def test_transformers_is_the_default_engine_and_speaks_the_scoring_contract() -> None:
    assert ENGINES[DEFAULT_ENGINE] is transformers.ENGINE
    assert (transformers.ENGINE.name, transformers.ENGINE.apis) == ("transformers", ("score",))


@pytest.mark.parametrize("command", ["serve", "deploy"])
def test_engine_option_offers_every_registered_engine(
    throwaway: Engine, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--engine {throwaway,transformers,vllm}" in out
    assert "test's container" in " ".join(out.split())


def test_an_unknown_engine_is_refused_with_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["deploy", "--engine", "sglang", "--dry-run"])
    assert done.value.code == 2
    assert "argument --engine: invalid choice: 'sglang'" in capsys.readouterr().err
    with pytest.raises(UsageError, match=r"--engine 'sglang': one of transformers, vllm"):
        DeployRequest(job="j", engine="sglang").check()


@pytest.mark.parametrize(
    ("instance_type", "context", "dtype"),
    [
        ("Standard_NC4as_T4_v3", "4096", "float16"),
        ("Standard_NC24ads_A100_v4", "32768", "bfloat16"),
    ],
)
def test_a_vllm_deployment_runs_the_front_on_vllms_image_sized_to_its_gpu(
    stack: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    instance_type: str,
    context: str,
    dtype: str,
) -> None:
    _, deployment, _ = dry_run(
        tmp_path, capsys, "--job", "j", "--engine", "vllm", "--instance-type", instance_type
    )
    assert deployment.code_configuration is None
    build = deployment.environment.build
    assert (Path(build.path), build.dockerfile_path) == (JOBS, "vllm/Dockerfile")
    assert deployment.environment.inference_config == {
        "livenessRoute": {"port": 8000, "path": "/health"},
        "readinessRoute": {"port": 8000, "path": "/health"},
        "scoringRoute": {"port": 8000, "path": "/v1/chat/completions"},
    }
    variables = deployment.environment_variables
    assert variables["PHI_VLLM_MAX_MODEL_LEN"] == context
    assert f"--dtype {dtype}" in variables["PHI_VLLM_ARGS"]
    assert deployment.request_settings.max_concurrent_requests_per_instance > 1
    assert deployment.readiness_probe.initial_delay == PROBE_INITIAL_DELAY_S


def test_the_vllm_image_is_the_facts_tables_and_runs_our_front() -> None:
    dockerfile = (JOBS / "vllm" / "Dockerfile").read_text()
    assert f"\nFROM {VLLM_IMAGE.reference}\n" in dockerfile
    entrypoint = json.loads(dockerfile.split("ENTRYPOINT ", 1)[1])
    assert entrypoint[1] == "/opt/finetune-phi/score/server.py"
    assert entrypoint[entrypoint.index("--port") + 1] == "8000"
    assert entrypoint[entrypoint.index("--served-model-name") + 1] == SERVED_MODEL
    copied = dockerfile.split("COPY ", 1)[1].split()[0]
    assert (JOBS / copied / "server.py").is_file()


def test_vllm_on_a_cpu_size_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(UsageError, match="--engine vllm needs a GPU size"):
        DeployRequest(job="j", engine="vllm", instance_type="Standard_E4s_v3").check()


def test_deploy_dry_run_uses_the_engines_spec(
    throwaway: Engine, stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, deployment, _ = dry_run(tmp_path, capsys, "--job", "j", "--engine", "throwaway")
    assert deployment.code_configuration is None
    assert deployment.environment.image == "example.azurecr.io/throwaway:1"
    assert deployment.environment.inference_config == {
        "livenessRoute": {"port": 8000, "path": "/health"},
        "readinessRoute": {"port": 8000, "path": "/ready"},
        "scoringRoute": {"port": 8000, "path": "/v1/chat/completions"},
    }
    assert deployment.environment_variables == {
        "AZURE_CLIENT_ID": "client-of-id-phi-dev",
        "HF_HUB_OFFLINE": "1",
        "THROWAWAY_THREADS": "8",
    }
    assert deployment.request_settings.max_concurrent_requests_per_instance == 16
    assert deployment.request_settings.request_timeout_ms == 90_000
    for probe, period in ((deployment.liveness_probe, 60), (deployment.readiness_probe, 20)):
        assert (probe.initial_delay, probe.period, probe.timeout, probe.failure_threshold) == (
            PROBE_INITIAL_DELAY_S,
            period,
            30,
            40,
        )


def test_transformers_named_or_not_deploys_the_same_bytes(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = []
    for engine in ([], ["--engine", "transformers"]):
        assert (
            main(["deploy", "--outputs", "outputs.json", "--dry-run", "--job", "j", *engine]) == 0
        )
        plans.append(capsys.readouterr().out)
    assert plans[0] == plans[1]


def test_a_serverless_endpoint_takes_no_engine(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["deploy", "--outputs", "outputs.json", "--serverless", "--dry-run"]
    assert main([*args, "--engine", "transformers"]) == 2
    assert "phi: error: --engine transformers: a serverless endpoint runs Azure's own" in (
        capsys.readouterr().err
    )


def test_a_rollout_records_the_engine_its_live_deployment_runs(
    throwaway: Engine, stack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = FakeService({"blue": 100})
    monkeypatch.setattr(
        "finetune_phi.core.stack_outputs.Workspace.client", lambda _: FakeMlClient(service)
    )
    deploy = ["deploy", "--outputs", "outputs.json", "--job", "j", "--no-verify", *ACCEPTED_RISK]
    assert main([*deploy, "--engine", "throwaway"]) == 0
    assert state.recall(WORKSPACE, state.LIVE_DEPLOYMENT) == {
        "endpoint": "phi-dev-abc123",
        "deployment": "green",
        "engine": "throwaway",
        "job": "j",
        "safety": {"safety": "risk accepted", "safety-risk-reason": ACCEPTED_RISK[1]},
    }


class ServedBy:
    """`run_in_group` in place of the server: what it was asked to run."""

    def __init__(self) -> None:
        self.command: list[str] = []
        self.env: dict[str, str] = {}

    def __call__(self, command: list[str], env: dict[str, str]) -> int:
        self.command, self.env = command, env
        return 0


@pytest.fixture
def served_by(monkeypatch: pytest.MonkeyPatch) -> ServedBy:
    served = ServedBy()
    monkeypatch.setattr("finetune_phi.local.serve.run_in_group", served)
    return served


@pytest.fixture
def mlflow_folder(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "MLmodel").write_text("flavors: {}\n")
    return tmp_path / "model"


def test_phi_serve_starts_the_engines_command_on_the_model(
    throwaway: Engine,
    served_by: ServedBy,
    mlflow_folder: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["serve", "--model", str(mlflow_folder), "--port", "5002", "--engine", "throwaway"]
    assert main(args) == 0
    assert served_by.command == ["throwaway-server", "--host", "127.0.0.1", "--port", "5002"]
    assert served_by.env["AZUREML_MODEL_DIR"] == str(mlflow_folder.resolve())
    assert served_by.env["THROWAWAY_CACHE_GB"] == "1"
    assert capsys.readouterr().err == (
        "phi serve: engine throwaway on http://127.0.0.1:5002: ready once GET /health answers "
        "200; chat-completions at http://127.0.0.1:5002/v1/chat/completions\n"
    )


def test_phi_serve_runs_the_front_on_transformers_by_default(
    served_by: ServedBy, mlflow_folder: Path
) -> None:
    assert main(["serve", "--model", str(mlflow_folder)]) == 0
    assert served_by.command[1].endswith("jobs/score/server.py")
    assert served_by.command[2:4] == ["--engine", "transformers"]
    assert served_by.command[4:8] == ["--host", "127.0.0.1", "--port", "5001"]
    assert served_by.env["HF_HUB_OFFLINE"] == "1"


def client_of(outputs: Path, **choice: Any) -> tuple[str, str, str | None]:
    values = json.loads(outputs.read_text())
    client = endpoints.stack_client(StackOutputs(values, str(outputs)), **choice)
    return client.scoring_uri, client.api, client.key


SERVERLESS = (f"{SERVERLESS_URI}/v1/chat/completions", "chat-completions", "serverless-k3y")


def test_a_managed_deployment_on_a_chat_completions_engine_is_spoken_to_so(
    throwaway: Engine, stack: Path
) -> None:
    record_live(WORKSPACE, "phi-dev-abc123", "green", "throwaway")
    assert client_of(stack) == (MANAGED_URI, "chat-completions", KEY)
    assert client_of(stack, api="chat-completions") == (MANAGED_URI, "chat-completions", KEY)
    assert client_of(stack, kind="serverless") == SERVERLESS
    with pytest.raises(UsageError) as refused:
        client_of(stack, api="score")
    assert str(refused.value) == (
        "--api score: the managed endpoint's engine throwaway speaks chat-completions, "
        "the serverless endpoint chat-completions (--managed speaks it to the managed endpoint "
        "all the same)"
    )
    assert client_of(stack, kind="managed") == (MANAGED_URI, "chat-completions", KEY)
    assert client_of(stack, kind="managed", api="score") == (MANAGED_URI, "score", KEY)


def test_the_managed_endpoint_speaks_score_unless_another_engine_was_recorded(
    stack: Path,
) -> None:
    assert client_of(stack) == (MANAGED_URI, "score", KEY)
    record_live(WORKSPACE, "another-endpoint", "blue", "throwaway")
    assert client_of(stack) == (MANAGED_URI, "score", KEY)
    record_live(WORKSPACE, "phi-dev-abc123", "blue", "transformers")
    assert client_of(stack, api="score") == (MANAGED_URI, "score", KEY)


def test_chat_completions_means_the_serverless_endpoint_while_the_managed_one_speaks_score(
    stack: Path,
) -> None:
    assert client_of(stack, api="chat-completions") == SERVERLESS
    assert client_of(stack, kind="serverless") == SERVERLESS
    with pytest.raises(
        UsageError, match=r"^--api score: the serverless endpoint speaks chat-completions only$"
    ):
        client_of(stack, kind="serverless", api="score")


def test_managed_speaks_api_to_the_managed_endpoint_whatever_was_recorded(stack: Path) -> None:
    """A deployment made from another folder left no record here."""
    assert client_of(stack, kind="managed") == (MANAGED_URI, "score", KEY)
    assert client_of(stack, kind="managed", api="chat-completions") == (
        MANAGED_URI,
        "chat-completions",
        KEY,
    )


def test_an_engine_this_phi_does_not_know_is_named_with_the_state_file(stack: Path) -> None:
    record_live(WORKSPACE, "phi-dev-abc123", "blue", "gone-engine")
    with pytest.raises(UsageError) as refused:
        client_of(stack)
    assert str(refused.value) == (
        f"{state.state_file()} records engine 'gone-engine' for endpoint phi-dev-abc123, which "
        "this phi does not know (it knows transformers, vllm): run phi deploy again, or delete "
        "'managed_deployment' there"
    )


def test_phi_chat_speaks_chat_completions_to_a_managed_deployment_that_does(
    throwaway: Engine, stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_live(WORKSPACE, "phi-dev-abc123", "green", "throwaway")
    with contract_server(Recorded(api="chat-completions", key=KEY)) as (uri, recorded):
        values = {**json.loads(stack.read_text()), "scoringUri": uri}
        stack.write_text(json.dumps(values))
        assert main(["chat", "--outputs", str(stack), "--greedy", "Hi there"]) == 0
    assert capsys.readouterr().out == "1 messages; last: Hi there\n"
    [request] = recorded.requests
    assert request["messages"] == [{"role": "user", "content": "Hi there"}]
    assert request["temperature"] == 0


def test_phi_flow_connect_and_eval_speak_what_the_endpoint_speaks(
    throwaway: Engine, stack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_live(WORKSPACE, "phi-dev-abc123", "green", "throwaway")
    made: list[tuple[str, ...]] = []

    def connect(*made_with: str) -> str:
        made.append(made_with)
        return made_with[2]

    monkeypatch.setattr("finetune_phi.local.flow_connection.connect", connect)
    assert main(["flow", "connect", "--outputs", str(stack)]) == 0
    assert main(["flow", "connect", "--outputs", str(stack), "--serverless"]) == 0
    assert made == [
        (MANAGED_URI, KEY, "phi3-endpoint", "chat-completions"),
        (SERVERLESS[0], SERVERLESS[2], "phi3-endpoint", "chat-completions"),
    ]
    args = argparse.Namespace(stack=None, outputs=stack, kind=None, api=None)
    candidate = eval_model("stack", "--candidate", args)
    assert isinstance(candidate, EndpointModel)
    assert (candidate.client.scoring_uri, candidate.client.api) == (MANAGED_URI, "chat-completions")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["chat", "--url", "http://127.0.0.1:9", "--serverless", "Hi"],
            "--url talks to that server",
        ),
        (
            ["flow", "connect", "--endpoint", "http://127.0.0.1:9/score", "--serverless"],
            "--endpoint names the endpoint itself",
        ),
        (
            ["eval", "--base", "a", "--candidate", "b", "--serverless"],
            "--serverless picks the stack's endpoint: it goes with --base or --candidate stack",
        ),
        (
            ["eval", "--base", "a", "--candidate", "b", "--managed"],
            "--managed picks the stack's endpoint: it goes with --base or --candidate stack",
        ),
    ],
)
def test_serverless_goes_with_the_stacks_endpoint_only(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert capsys.readouterr().err.startswith(f"phi: error: {message}")


def test_one_endpoint_at_a_time(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["chat", "--managed", "--serverless", "Hi"])
    assert done.value.code == 2
    assert "argument --serverless: not allowed with argument --managed" in capsys.readouterr().err


def test_vllm_serves_from_its_own_environment_or_says_how_to_make_it(
    served_by: ServedBy,
    mlflow_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "vllm").mkdir()  # a folder named vllm where phi runs is not vLLM
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    environment = tmp_path / ".venv-vllm"
    monkeypatch.setattr(vllm, "VLLM_ENVIRONMENT", environment)
    assert main(["serve", "--model", str(mlflow_folder), "--engine", "vllm"]) == 2
    assert capsys.readouterr().err == (
        "phi: error: --engine vllm: vLLM is not installed here: `make venv-vllm` in a checkout "
        "(a CPU build, for tests and CPU machines), or `pip install vllm` on a GPU machine\n"
    )
    (environment / "bin").mkdir(parents=True)
    (environment / "bin" / "python").touch()
    assert main(["serve", "--model", str(mlflow_folder), "--engine", "vllm"]) == 0
    assert served_by.command[2:6] == [
        *("--engine", "vllm", "--vllm-python", str(environment / "bin" / "python"))
    ]
