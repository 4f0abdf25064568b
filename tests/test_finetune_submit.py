"""`phi finetune submit`: the dry-run job loads with azure-ai-ml; submit uploads once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml import PyTorchDistribution, load_job
from azure.ai.ml.entities import Command
from azure.core.exceptions import ResourceNotFoundError

from finetune_phi.cli.main import main
from finetune_phi.cloud.environment import BASE_IMAGE
from finetune_phi.cloud.finetune.custom import build_job, finetune_request
from finetune_phi.cloud.finetune.data_assets import content_version
from finetune_phi.cloud.finetune.methods import SubmitOptions, submit
from finetune_phi.core import state
from finetune_phi.core.azure_facts import AZURE_TORCH
from finetune_phi.core.folders import TRAIN_REQUIREMENTS
from tests.support import SAMPLE, submit_workdir

OUTPUTS = {
    "subscriptionId": "sub-1",
    "resourceGroupName": "rg-phi-dev",
    "workspaceName": "mlw-phi-dev",
    "gpuComputeName": "gpu-phidev",
    "cpuComputeName": "cpu-phidev",
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return submit_workdir(tmp_path, monkeypatch, OUTPUTS)


def dry_run(workdir: Path, capsys: pytest.CaptureFixture[str], *args: str) -> Command:
    """The whole job YAML (`phi --verbose`: the lock's pins listed), loaded by azure-ai-ml."""
    command = ["--verbose", "finetune", "submit", "--outputs", "outputs.json", "--dry-run"]
    assert main([*command, *args]) == 0
    path = workdir / "job.yaml"
    path.write_text(capsys.readouterr().out)
    job = load_job(path)
    assert isinstance(job, Command)
    return job


def test_dry_run_job_loads_with_the_expected_spec(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = dry_run(
        workdir, capsys, "--nodes", "2", "--gpus-per-node", "4", "--num_train_epochs", "1"
    )
    assert job.compute == "gpu-phidev"
    assert job.resources.instance_count == 2
    assert isinstance(job.distribution, PyTorchDistribution)
    assert job.distribution.process_count_per_instance == 4
    assert job.environment.image == BASE_IMAGE
    pip = job.environment.conda_file["dependencies"][2]["pip"]
    assert f"torch=={AZURE_TORCH.version}" in pip
    assert any(p.startswith("nvidia-cudnn-cu12==") for p in pip)
    assert any(p.startswith("trl==") for p in pip)
    train_version = content_version(workdir / "data" / "train_data.jsonl")
    # The data assets are referenced by content-hash version, never re-uploaded as local paths.
    assert (
        job.inputs["train_data"].path.removeprefix("azureml:") == f"phi-chat-train:{train_version}"
    )
    assert job.inputs["eval_data"].path.removeprefix("azureml:").startswith("phi-chat-eval:")
    assert job.outputs["model"].type == "mlflow_model"
    assert job.command is not None
    assert "--model_output ${{outputs.model}}" in job.command
    assert job.command.endswith("--num_train_epochs 1")
    assert job.experiment_name == "finetune-phi"
    assert job.display_name
    assert Path(str(job.code)).name == "src"


def test_the_dry_run_names_the_lock_by_path_and_hash_and_verbose_lists_it(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user reviews: the job, with the environment's pins (most of the YAML) named by
    the lock file and its sha256; `phi --verbose` prints them all."""
    import hashlib

    import yaml

    assert main(["finetune", "submit", "--outputs", "outputs.json", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    pins = [
        line
        for line in TRAIN_REQUIREMENTS.read_text().splitlines()
        if "==" in line and line[0] != "#"
    ]
    assert len(printed.splitlines()) < 60
    assert not any(pin in printed for pin in pins)
    spec = yaml.safe_load(printed)
    assert spec["environment"]["conda_file"]["dependencies"][2]["pip"] == {
        "lock": str(TRAIN_REQUIREMENTS),
        "pins": len(pins),
        "sha256": hashlib.sha256(TRAIN_REQUIREMENTS.read_bytes()).hexdigest(),
        "listed_by": "phi --verbose finetune submit --dry-run",
    }
    assert "--model_output ${{outputs.model}}" in spec["command"]
    pip = dry_run(workdir, capsys).environment.conda_file["dependencies"][2]["pip"]
    assert pip == pins


def test_cpu_profile_reproduces_the_tutorials_low_cost_path(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = dry_run(workdir, capsys, "--profile", "cpu", "--max_length", "256")
    assert job.compute == "cpu-phidev"
    assert job.distribution is None
    assert job.resources.instance_count == 1
    assert job.command is not None
    assert "--per_device_train_batch_size 1" in job.command
    # The user's own TRL argument comes last, so it wins over the profile's.
    assert job.command.index("--max_length 512") < job.command.index("--max_length 256")


def test_a_single_process_job_has_no_distribution(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dry_run(workdir, capsys).distribution is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train-file", "missing.jsonl"], "--train-file missing.jsonl: no such file"),
        (["--profile", "cpu", "--nodes", "2"], "--profile cpu runs one process on one node"),
        (["--nodes", "0"], "--nodes 0: must be between 1 and 100"),
        (["--learningRate", "1"], "--learningRate: TRL arguments are spelt in snake_case"),
        (["--model_output", "x"], "--model_output is set by phi itself"),
        (["--experiment", "my experiment!"], "--experiment 'my experiment!'"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_sent(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["finetune", "submit", "--outputs", "outputs.json", "--dry-run", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_a_stack_without_cpu_cluster_says_how_to_get_one(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "outputs.json").write_text(json.dumps({**OUTPUTS, "cpuComputeName": None}))
    assert (
        main(["finetune", "submit", "--outputs", "outputs.json", "--dry-run", "--profile", "cpu"])
        == 2
    )
    assert "pulumi config set cpuCluster true" in capsys.readouterr().err


def test_outputs_can_come_from_the_environment(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINETUNE_PHI_GPU_COMPUTE_NAME", "gpu-from-env")
    assert main(["finetune", "submit", "--dry-run"]) == 0
    assert "compute: azureml:gpu-from-env" in capsys.readouterr().out


def test_missing_outputs_name_the_key_and_its_variable(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["finetune", "submit", "--dry-run"]) == 2
    assert "lack gpuComputeName (or $PHI_GPU_COMPUTE_NAME)" in capsys.readouterr().err


class FakeAssets:
    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], Any] = {}
        self.uploads = 0

    def get(self, name: str, version: str) -> Any:
        if (name, version) not in self.stored:
            raise ResourceNotFoundError(f"{name}:{version}")
        return self.stored[(name, version)]

    def create_or_update(self, asset: Any) -> Any:
        self.uploads += 1
        self.stored[(asset.name, asset.version)] = asset
        return asset


class FakeJobs:
    def __init__(self) -> None:
        self.created: list[Any] = []

    def create_or_update(self, job: Any) -> Any:
        self.created.append(job)
        job.name = f"job-{len(self.created)}"
        return job


class FakeMlClient:
    """Stands in for Azure ML's service, not for azure-ai-ml's job and data classes."""

    def __init__(self) -> None:
        self.data = FakeAssets()
        self.jobs = FakeJobs()


def test_resubmitting_the_same_data_uploads_nothing(workdir: Path) -> None:
    options = SubmitOptions(
        workdir / "data" / "train_data.jsonl", workdir / "data" / "eval_data.jsonl"
    )
    request = finetune_request(options.request())
    client = FakeMlClient()
    submit(client, options, build_job(request, "gpu-phidev"), log=lambda _: None)
    submit(client, options, build_job(request, "gpu-phidev"), log=lambda _: None)
    assert client.data.uploads == 2  # train and test, once each
    assert [job.name for job in client.jobs.created] == ["job-1", "job-2"]
    (workdir / "data" / "train_data.jsonl").write_text(SAMPLE.read_text())
    submit(client, options, build_job(request, "gpu-phidev"), log=lambda _: None)
    assert client.data.uploads == 3  # only the changed file


def test_the_job_name_is_recorded_for_phi_deploy(workdir: Path) -> None:
    state.record("sub-1/rg-phi-dev/mlw-phi-dev", "last_finetune_job", "job-7")
    assert state.recall("sub-1/rg-phi-dev/mlw-phi-dev", "last_finetune_job") == "job-7"
    assert state.recall("sub-1/rg-phi-dev/other", "last_finetune_job") is None
    assert (workdir / ".phi" / "state.json").exists()


def test_a_folder_prepared_before_the_rename_still_submits(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = workdir / "data"
    (data / "eval_data.jsonl").rename(data / "test_data.jsonl")
    assert main(["finetune", "submit", "--outputs", "outputs.json", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "--eval_file ${{inputs.eval_data}}" in out
    assert err == (
        "phi: warning: data/test_data.jsonl is now data/eval_data.jsonl; "
        "the old spelling goes in 0.3\n"
    )


def test_the_old_option_still_works_and_names_the_new_one(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held_out = str(workdir / "data" / "eval_data.jsonl")
    args = ["finetune", "submit", "--outputs", "outputs.json", "--dry-run", "--test-file", held_out]
    assert main(args) == 0
    assert capsys.readouterr().err == (
        "phi: warning: --test-file is now --eval-file; the old spelling goes in 0.3\n"
    )


@pytest.mark.parametrize("method", ["custom", "catalog", "serverless"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"messages": "x"}\n', "bad.jsonl:1: 'messages' must be a non-empty list"),
        (b"PAR1\x00\x00", "bad.jsonl: Parquet; training reads chat JSONL"),
        (b'[{"messages": []}]', "bad.jsonl: a JSON array; chat JSONL has one JSON object per line"),
    ],
    ids=["bad-row", "parquet", "json-array"],
)
def test_bad_data_never_reaches_a_gpu(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    method: str,
    content: bytes,
    message: str,
) -> None:
    """Every method reads the files as `phi data validate` does before anything is
    uploaded: even the dry run refuses them."""
    (workdir / "bad.jsonl").write_bytes(content)
    args = ["--method", method, "--train-file", "bad.jsonl", "--dry-run"]
    assert main(["finetune", "submit", "--outputs", "outputs.json", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""
