"""`phi finetune list|status|logs|cancel|download`: a submitted job followed and brought back,
through azure-ai-ml's own MLClient on a session whose Resource Manager is the loopback
stand-in of tests/arm_server.py (documents in the REST specification's job shape).

What the SDK fetches off Resource Manager (run history for logs, the workspace's storage for
a download) cannot be served from the stand-in: `ml_client.on_session` refuses every other
host, as it should. There the SDK's narrowest seam is replaced, and nothing of ours: run
history's `RunOperations.get_run_details` and azure-ai-ml's `download_text_from_url` for
logs; `JobOperations._get_named_output_uri` and `download_artifact_from_aml_uri` for a
download, so the SDK's own `jobs.download` still reads the job, checks its status and lays
the files out where it always does."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from finetune_phi.cli.main import main
from finetune_phi.cloud import ml_client
from finetune_phi.core import state
from finetune_phi.core.arm import ARM_ENDPOINT, ArmClient
from finetune_phi.core.stack_outputs import Workspace
from tests.arm_server import ArmState, arm_server, arm_session
from tests.support import BIN

SUB = "00000000-0000-0000-0000-000000000001"
RG = "rg-phi-dev"
WS = "mlw-phi-dev"
PROJECT = "proj-phi-dev"
OUTPUTS = {
    "subscriptionId": SUB,
    "resourceGroupName": RG,
    "workspaceName": WS,
    "foundryProjectName": PROJECT,
}
WORKSPACES = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces"
JOBS = f"{WORKSPACES}/{WS}/jobs"
GET_API = "api-version=2024-01-01-preview"
"""The api-version azure-ai-ml 1.35 reads jobs with (its `service_client_01_2024_preview_arm`)."""
CANCEL_API = "api-version=2023-04-01-preview"
MODEL_URI = "azureml://datastores/workspaceblobstore/paths/azureml/job1/model/"


def job_document(
    name: str,
    status: str = "Completed",
    *,
    job_type: str = "Command",
    experiment: str = "finetune-phi",
    workspace: str = WS,
    **properties: Any,
) -> dict[str, Any]:
    """A job as Resource Manager answers GET .../workspaces/WS/jobs/NAME (JobBase in the
    REST specification: `properties.jobType`, `status`, `services.Studio.endpoint`,
    `outputs`; `systemData.createdAt`)."""
    shapes: dict[str, dict[str, Any]] = {
        "Command": {
            "displayName": "sft Phi-3.5-mini-instruct (gpu)",
            "command": "python train.py --config hyperparameters.yaml",
            "environmentId": "azureml:finetune-phi-train:1",
            "computeId": f"{WORKSPACES}/{WS}/computes/gpu-phidev",
            "outputs": {"model": {"jobOutputType": "mlflow_model", "uri": MODEL_URI}},
            "tags": {"project": "finetune-phi", "profile": "gpu"},
        },
        "Pipeline": {
            "displayName": "catalog fine-tune Phi-4-mini-instruct",
            "jobs": {},
            "outputs": {"model": {"jobOutputType": "mlflow_model", "uri": MODEL_URI}},
            "tags": {"project": "finetune-phi", "method": "catalog"},
        },
        "FineTuning": {
            "displayName": "serverless fine-tune",
            "properties": {},
            "outputs": {
                "registered_model": {"jobOutputType": "mlflow_model", "assetName": "phi-finetuned"}
            },
            "fineTuningDetails": {
                "modelProvider": "Custom",
                "taskType": "ChatCompletion",
                "model": {
                    "jobInputType": "mlflow_model",
                    "uri": "azureml://registries/azureml/models/Phi-4-mini-instruct/versions/1",
                },
                "trainingData": {"jobInputType": "uri_file", "uri": "azureml:phi-chat-train:1"},
                "hyperParameters": {},
            },
        },
    }
    return {
        "id": f"{WORKSPACES}/{workspace}/jobs/{name}",
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces/jobs",
        "properties": {
            "jobType": job_type,
            "status": status,
            "experimentName": experiment,
            "services": {"Studio": {"endpoint": f"https://ml.azure.com/runs/{name}?wsid=x"}},
            **shapes[job_type],
            **properties,
        },
        "systemData": {"createdAt": "2026-12-01T10:00:00Z", "createdBy": "someone"},
    }


class FakeCredential:
    """Signed in, offline: a token only the stand-in ever sees."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("test-token", int(time.time()) + 3600)


def loopback_client(session: Any, workspace: Workspace) -> Any:
    """azure-ai-ml's MLClient for `workspace`, built by `ml_client.on_session` (which takes
    no workspace name, so the name is added to the SDK's constructor while it runs)."""
    import azure.ai.ml

    named = functools.partial(azure.ai.ml.MLClient, workspace_name=workspace.name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(azure.ai.ml, "MLClient", named)
        arm = ArmClient(session, lambda: "test-token", request_timeout_seconds=10)
        return ml_client.on_session(
            FakeCredential(),
            arm,
            session,
            workspace.subscription_id,
            workspace.resource_group,
            poll_seconds=0,
        )


@dataclass
class Cloud:
    state: ArmState
    clients: list[Any]

    def calls(self) -> list[tuple[str, str]]:
        return self.state.resource_calls()


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """A working folder with the stack outputs, and every `Workspace.client()` an MLClient on
    the stand-in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PHI_STATE_DIR", str(tmp_path / ".phi"))
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    with arm_server() as (endpoint, arm_state):
        session = arm_session(endpoint, arm_state)
        found = Cloud(arm_state, [])

        def client(workspace: Workspace) -> Any:
            made = loopback_client(session, workspace)
            # What the workspace's discovery URL (off Resource Manager) would answer: where
            # run history is. Its calls are replaced where a test needs them.
            made.jobs._api_base_url = "https://eastus2.api.azureml.ms"
            found.clients.append(made)
            return made

        monkeypatch.setattr(Workspace, "client", client)
        yield found
    assert arm_state.refused == []


def phi(*args: str) -> int:
    return main(["finetune", *args, "--outputs", "outputs.json"])


def record(job: str, workspace: str = WS) -> None:
    state.record(f"{SUB}/{RG}/{workspace}", state.LAST_FINETUNE_JOB, job)


# --- dry runs -------------------------------------------------------------------------------


GET_JOB = f"GET {ARM_ENDPOINT}{JOBS}/job1?{GET_API}"


@pytest.mark.parametrize(
    ("args", "calls", "requests"),
    [
        (["list"], ["list()"], [f"GET {ARM_ENDPOINT}{JOBS}?{GET_API}&listViewType=ActiveOnly"]),
        (["status"], ["get('job1')"], [GET_JOB]),
        (["logs"], ["get('job1')"], [GET_JOB]),
        (["logs", "--follow"], ["stream('job1')"], [GET_JOB]),
        (
            ["cancel", "job1"],
            ["get('job1')", "begin_cancel('job1')"],
            [GET_JOB, f"POST {ARM_ENDPOINT}{JOBS}/job1/cancel?{CANCEL_API}"],
        ),
        (
            ["download"],
            [
                "get('job1')",
                "download(name='job1', output_name='model', download_path='out/.model.XXXXXXXX')",
            ],
            [GET_JOB, GET_JOB],
        ),
    ],
)
def test_each_dry_run_names_the_workspace_calls_and_requests_and_sends_nothing(
    cloud: Cloud,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    calls: list[str],
    requests: list[str],
) -> None:
    """The SDK itself builds each request (on a transport that sends nothing); no signed-in
    client is made and the stand-in hears nothing."""
    record("job1")
    assert phi(*args, "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"workspace: {WS} (resource group {RG}, subscription {SUB})\n")
    assert ("job: job1\n" in out) == (args != ["list"])
    lines = out.splitlines()
    assert [
        line.removeprefix("azure-ai-ml: MLClient.jobs.") for line in lines if "ai-ml:" in line
    ] == (calls)
    assert [line.split("request: ")[1] for line in lines if "request: " in line] == requests
    assert out.endswith("dry run: nothing sent\n")
    assert cloud.calls() == []
    assert cloud.clients == []


def test_a_dry_run_needs_no_credentials(tmp_path: Path) -> None:
    """In a process with no Azure sign-in of any kind: exit 0, the plan on stdout."""
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    result = subprocess.run(
        [
            str(BIN / "phi"),
            "finetune",
            "download",
            "job1",
            "--outputs",
            "outputs.json",
            "--dry-run",
        ],
        cwd=tmp_path,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "download(name='job1', output_name='model'" in result.stdout
    assert f"GET {ARM_ENDPOINT}{JOBS}/job1?{GET_API}" in result.stdout
    assert not (tmp_path / "out").exists()


def test_no_recorded_job_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    result = subprocess.run(
        [str(BIN / "phi"), "finetune", "status", "--outputs", "outputs.json"],
        cwd=tmp_path,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("phi: error: no job recorded: pass JOB or submit one first")
    assert result.stdout == ""


# --- status, list, cancel -------------------------------------------------------------------


def test_status_of_the_recorded_job_reads_it_once_and_names_its_model(
    cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    record("job1")
    cloud.state.documents[f"{JOBS}/job1"] = job_document("job1")
    assert phi("status") == 0
    assert cloud.calls() == [("GET", f"{JOBS}/job1?{GET_API}")]
    assert cloud.state.calls[0].authorization == "Bearer test-token"
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "name: job1",
        "status: Completed",
        "method: custom",
        "display name: sft Phi-3.5-mini-instruct (gpu)",
        "experiment: finetune-phi",
        "created: 2026-12-01T10:00:00+00:00",
        "studio: https://ml.azure.com/runs/job1?wsid=x",
        f"output model: {MODEL_URI}",
        "next: phi finetune download job1 --output out/model",
    ]


def test_status_of_a_running_job_names_no_output(
    cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.state.documents[f"{JOBS}/job2"] = job_document("job2", "Running", job_type="Pipeline")
    assert phi("status", "job2") == 0
    out = capsys.readouterr().out
    assert "status: Running\nmethod: catalog\n" in out
    assert "output" not in out
    assert "next:" not in out


def test_status_of_a_serverless_job_asks_the_foundry_project(
    cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    """--method serverless: the project's recorded job, read as azure-ai-ml reads a
    fine-tuning job (a second GET at the fine-tuning API version)."""
    record("ft1", PROJECT)
    path = f"{WORKSPACES}/{PROJECT}/jobs/ft1"
    cloud.state.documents[path] = job_document("ft1", job_type="FineTuning", workspace=PROJECT)
    assert phi("status", "--method", "serverless") == 0
    assert cloud.calls() == [
        ("GET", f"{path}?{GET_API}"),
        ("GET", f"{path}?api-version=2024-10-01-preview"),
    ]
    out = capsys.readouterr().out
    assert "method: serverless\n" in out
    assert "output registered_model: phi-finetuned" in out
    assert "next:" not in out


def test_list_reads_pages_only_until_it_has_enough_of_the_experiment(
    cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.state.documents[JOBS] = {
        "value": [job_document("a"), job_document("b", experiment="other")],
        "nextLink": f"{ARM_ENDPOINT}{JOBS}/page2",
    }
    cloud.state.documents[f"{JOBS}/page2"] = {
        "value": [job_document("c", "Running"), job_document("d", "Failed")],
        "nextLink": f"{ARM_ENDPOINT}{JOBS}/page3",
    }
    assert phi("list", "--max", "2") == 0
    assert [method for method, _ in cloud.calls()] == ["GET", "GET"]
    assert cloud.calls()[0] == ("GET", f"{JOBS}?{GET_API}&listViewType=ActiveOnly")
    assert cloud.calls()[1][1].startswith(f"{JOBS}/page2")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "status", "created", "method", "display", "name"]
    assert [line.split()[:2] for line in lines[1:]] == [["a", "Completed"], ["c", "Running"]]


def test_list_of_every_experiment_stops_at_max_on_the_first_page(
    cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.state.documents[JOBS] = {
        "value": [job_document("a"), job_document("b", experiment="other")],
        "nextLink": f"{ARM_ENDPOINT}{JOBS}/page2",
    }
    assert phi("list", "--all-experiments", "--max", "2") == 0
    assert cloud.calls() == [("GET", f"{JOBS}?{GET_API}&listViewType=ActiveOnly")]
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["a", "b"]


def test_list_refuses_a_max_out_of_bounds(cloud: Cloud, capsys: pytest.CaptureFixture[str]) -> None:
    assert phi("list", "--max", "0") == 2
    assert "--max 0: must be between 1 and 1000" in capsys.readouterr().err
    assert cloud.calls() == []


def test_cancel_reads_the_job_then_asks_azure_and_waits_for_it(
    cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.state.documents[f"{JOBS}/job1"] = job_document("job1", "Running")
    assert phi("cancel", "job1") == 0
    assert cloud.calls() == [
        ("GET", f"{JOBS}/job1?{GET_API}"),
        ("POST", f"{JOBS}/job1/cancel?{CANCEL_API}"),
    ]
    assert [c.path for c in cloud.state.calls][-1].startswith("/operations/")  # polled to done
    assert "job job1: cancel accepted" in capsys.readouterr().out


def test_cancel_leaves_a_finished_job_alone(
    cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.state.documents[f"{JOBS}/job1"] = job_document("job1", "Failed")
    assert phi("cancel", "job1") == 0
    assert cloud.calls() == [("GET", f"{JOBS}/job1?{GET_API}")]
    assert "already finished (Failed): nothing to cancel" in capsys.readouterr().out


def test_cancel_needs_a_job_named(cloud: Cloud, capsys: pytest.CaptureFixture[str]) -> None:
    record("job1")
    with pytest.raises(SystemExit) as exit_:
        phi("cancel")
    assert exit_.value.code == 2
    assert cloud.calls() == []


def test_a_job_azure_does_not_know_is_one_line(
    cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    assert phi("status", "nope") == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("phi: error: Azure refused the request (HTTP 404)")


# --- logs -----------------------------------------------------------------------------------


def test_logs_print_the_user_logs_so_far(
    cloud: Cloud, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files `jobs.stream` would print (rank 0's user log; not system logs), read once,
    from run history's answer (its real `RunDetails`)."""
    from azure.ai.ml._restclient.runhistory.models import RunDetails
    from azure.ai.ml._utils import utils
    from azure.ai.ml.operations._run_operations import RunOperations

    record("job1")
    cloud.state.documents[f"{JOBS}/job1"] = job_document("job1", "Running")
    files = {
        "user_logs/std_log_process_0.txt": "https://blob.example/0?sas",
        "user_logs/std_log_process_1.txt": "https://blob.example/1?sas",
        "system_logs/lifecycler/execution-wrapper.log": "https://blob.example/sys?sas",
    }
    texts = {
        "https://blob.example/0?sas": "step 1 loss 2.0\nstep 2 loss 1.5",
        "https://blob.example/1?sas": "rank 1",
        "https://blob.example/sys?sas": "system",
    }
    asked: list[str] = []

    def run_details(self: RunOperations, run_id: str) -> RunDetails:
        asked.append(run_id)
        return RunDetails(status="Running", log_files=files)

    monkeypatch.setattr(RunOperations, "get_run_details", run_details)
    monkeypatch.setattr(utils, "download_text_from_url", lambda url, pipeline, **_: texts[url])
    assert phi("logs") == 0
    assert asked == ["job1"]
    assert capsys.readouterr().out == (
        "==> user_logs/std_log_process_0.txt <==\nstep 1 loss 2.0\nstep 2 loss 1.5\n"
    )
    assert cloud.calls() == [("GET", f"{JOBS}/job1?{GET_API}")]


def test_logs_follow_streams_through_the_sdk_until_the_end(
    cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    """`jobs.stream` reads the job (on the stand-in) and hands it to its own loop, which is
    replaced here by one that records the job it was given."""
    record("job1")
    cloud.state.documents[f"{JOBS}/job1"] = job_document("job1", "Running")
    streamed: list[str] = []
    real_client = Workspace.client

    def client(workspace: Workspace) -> Any:
        made = real_client(workspace)
        made.jobs._stream_logs_until_completion = lambda runs, job, *a, **k: streamed.append(
            job.name
        )
        return made

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Workspace, "client", client)
        assert phi("logs", "--follow") == 0
    assert streamed == ["job1"]
    assert cloud.calls() == [("GET", f"{JOBS}/job1?{GET_API}")]


# --- download -------------------------------------------------------------------------------


def mlflow_model(folder: Path, *, mlmodel: bool = True) -> Path:
    """What the training script's output holds: an MLflow transformers model."""
    (folder / "components" / "tokenizer").mkdir(parents=True)
    (folder / "components" / "tokenizer" / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    if mlmodel:
        (folder / "MLmodel").write_text("flavors:\n  transformers:\n    task: text-generation\n")
    return folder


@pytest.fixture
def storage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The job's output in "storage": the SDK's look-up of a named output's URI and its
    copy from the datastore replaced; `jobs.download` itself runs."""
    from azure.ai.ml.operations import _job_operations
    from azure.ai.ml.operations._job_operations import JobOperations

    held: dict[str, Any] = {"model": mlflow_model(tmp_path / "storage" / "model"), "asked": []}

    def named_outputs(self: Any, job_name: str, output_names: Any = None) -> dict[str, str]:
        held["asked"].append((job_name, output_names))
        return {"model": MODEL_URI}

    def copy(uri: str, destination: str, datastore_operation: Any) -> None:
        assert uri == MODEL_URI
        shutil.copytree(held["model"], destination)

    monkeypatch.setattr(JobOperations, "_get_named_output_uri", named_outputs)
    monkeypatch.setattr(_job_operations, "download_artifact_from_aml_uri", copy)
    return held


def test_download_brings_the_model_to_out_model_for_eval_and_serve(
    cloud: Cloud, storage: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    record("job1")
    cloud.state.documents[f"{JOBS}/job1"] = job_document("job1")
    assert phi("download") == 0
    model = tmp_path / "out" / "model"
    assert (model / "MLmodel").is_file()  # what phi eval --candidate and phi serve --model need
    assert (model / "model.safetensors").read_bytes() == b"weights"
    assert storage["asked"] == [("job1", "model")]
    assert cloud.calls() == [("GET", f"{JOBS}/job1?{GET_API}")] * 2  # ours, then the SDK's
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model"]  # no leftovers
    out = capsys.readouterr().out
    assert f"job job1's MLflow model is at {Path('out') / 'model'}" in out
    assert "phi eval --base MODEL --candidate out/model" in out


def test_download_refuses_a_non_empty_output_and_loses_nothing(
    cloud: Cloud, storage: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    record("job1")
    kept = tmp_path / "mine" / "notes.txt"
    kept.parent.mkdir()
    kept.write_text("mine")
    assert phi("download", "--output", "mine") == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert (
        line
        == "phi: error: --output mine is not empty: pass --force to replace it, or name another folder"
    )
    assert kept.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".mine")) == []
    assert cloud.calls() == []


def test_download_with_force_replaces_the_folder_whole(
    cloud: Cloud, storage: dict[str, Any], tmp_path: Path
) -> None:
    record("job1")
    cloud.state.documents[f"{JOBS}/job1"] = job_document("job1")
    old = tmp_path / "out" / "model"
    old.mkdir(parents=True)
    (old / "stale.txt").write_text("old")
    assert phi("download", "--force") == 0
    assert (old / "MLmodel").is_file()
    assert not (old / "stale.txt").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model"]


def test_an_output_without_mlmodel_is_refused_and_the_old_folder_kept(
    cloud: Cloud, storage: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    record("job1")
    cloud.state.documents[f"{JOBS}/job1"] = job_document("job1")
    shutil.rmtree(storage["model"])
    mlflow_model(storage["model"], mlmodel=False)
    old = tmp_path / "out" / "model"
    old.mkdir(parents=True)
    (old / "MLmodel").write_text("the previous model")
    assert phi("download", "--force") == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds no MLmodel file, so it is not an MLflow model" in line
    assert (old / "MLmodel").read_text() == "the previous model"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model"]


@pytest.mark.parametrize(
    ("status", "says"),
    [
        ("Running", "job job1 is Running: only a Completed job has a model; follow it with"),
        ("Failed", "job job1 is Failed: only a Completed job has a model"),
    ],
)
def test_download_of_an_unfinished_or_failed_job_is_refused(
    cloud: Cloud,
    storage: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    status: str,
    says: str,
) -> None:
    cloud.state.documents[f"{JOBS}/job1"] = job_document("job1", status)
    assert phi("download", "job1") == 1
    assert says in capsys.readouterr().err
    assert storage["asked"] == []
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_download_of_a_catalog_job_takes_its_model_output(
    cloud: Cloud, storage: dict[str, Any], tmp_path: Path
) -> None:
    cloud.state.documents[f"{JOBS}/pipe1"] = job_document("pipe1", job_type="Pipeline")
    assert phi("download", "pipe1", "--output", "catalog-model") == 0
    assert storage["asked"] == [("pipe1", "model")]
    assert (tmp_path / "catalog-model" / "MLmodel").is_file()


def test_download_of_a_serverless_job_is_refused_with_the_reason(
    cloud: Cloud, storage: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = f"{WORKSPACES}/{PROJECT}/jobs/ft1"
    cloud.state.documents[path] = job_document("ft1", job_type="FineTuning", workspace=PROJECT)
    assert phi("download", "ft1", "--method", "serverless") == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "serverless fine-tune: the service registers phi-finetuned" in line
    assert "phi deploy --serverless" in line
    assert storage["asked"] == []
