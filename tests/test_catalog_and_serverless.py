"""`phi finetune submit --method catalog|serverless`: specs checked by azure-ai-ml's own loader."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml import load_job
from azure.ai.ml.entities import PipelineJob

from finetune_phi.cli.main import main
from finetune_phi.cloud.finetune.catalog import CATALOG_PIPELINE, OFFER
from finetune_phi.cloud.finetune.data_assets import content_version
from finetune_phi.core.errors import UsageError
from tests.support import EXAMPLE_OUTPUTS, submit_workdir

OUTPUTS = EXAMPLE_OUTPUTS
catalog_model = OFFER.model


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return submit_workdir(tmp_path, monkeypatch, OUTPUTS)


def dry_run(workdir: Path, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    assert main(["finetune", "submit", "--outputs", "outputs.json", "--dry-run", *args]) == 0, (
        capsys.readouterr().err
    )
    path = workdir / "spec.yaml"
    path.write_text(capsys.readouterr().out)
    return load_job(path)


def test_catalog_pipeline_runs_the_registry_component_on_the_gpu_cluster(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = dry_run(
        workdir,
        capsys,
        "--method",
        "catalog",
        "--learning-rate",
        "3e-5",
        "--lr-scheduler",
        "cosine",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--no-lora",
        "--deepspeed",
    )
    assert isinstance(job, PipelineJob)
    assert job.settings is not None
    assert job.settings.default_compute == "gpu-phidev"
    step = job.jobs["chat_completion"]
    assert step.component == CATALOG_PIPELINE
    inputs = {name: value._data for name, value in step.inputs.items()}
    assert inputs["compute_finetune"] == "gpu-phidev"
    assert (
        inputs["mlflow_model_path"].path
        == "azureml://registries/azureml/models/Phi-4-mini-instruct/labels/latest"
    )
    version = content_version(workdir / "data" / "train_data.jsonl")
    assert inputs["train_file_path"].path.removeprefix("azureml:") == f"phi-chat-train:{version}"
    assert (inputs["learning_rate"], inputs["lr_scheduler_type"], inputs["num_train_epochs"]) == (
        3e-5,
        "cosine",
        2,
    )
    assert (inputs["apply_lora"], inputs["apply_deepspeed"]) == ("false", "true")
    # Named like the custom script's output, so `phi deploy` registers it the same way.
    assert list(job.outputs) == ["model"]


def test_serverless_job_is_fine_tuning_as_a_service(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = dry_run(
        workdir,
        capsys,
        "--method",
        "serverless",
        "--epochs",
        "2",
        "--learning-rate",
        "2e-5",
        "--batch-size",
        "1",
        "--output-model-name",
        "phi-support",
    )
    assert type(job).__name__ == "CustomModelFineTuningJob"
    assert job.task == "chatCompletion"
    assert job.model.path == "azureml://registries/azureml/models/Phi-4-mini-instruct/labels/latest"
    # The names azure-ai-ml's serverless fine-tuning sample sends, as strings.
    assert job.hyperparameters == {
        "per_device_train_batch_size": "1",
        "learning_rate": "2e-05",
        "num_train_epochs": "2",
    }
    assert job.validation_data is not None
    assert job.outputs["registered_model"].name == "phi-support"


def test_serverless_automatic_split_sends_no_validation_data(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = dry_run(workdir, capsys, "--method", "serverless", "--auto-split")
    assert job.validation_data is None


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        (
            {"location": "westeurope"},
            "offered in eastus2, eastus, northcentralus, southcentralus, westus, westus3, not in the stack's region westeurope",
        ),
        ({"foundryProjectName": None}, "pulumi config set foundry true"),
    ],
)
def test_serverless_needs_its_region_and_the_foundry_project(
    workdir: Path, capsys: pytest.CaptureFixture[str], changed: dict[str, Any], message: str
) -> None:
    (workdir / "outputs.json").write_text(json.dumps({**OUTPUTS, **changed}))
    command = [
        "finetune",
        "submit",
        "--outputs",
        "outputs.json",
        "--dry-run",
        "--method",
        "serverless",
    ]
    assert main(command) == 2
    assert message in capsys.readouterr().err


def test_a_retired_model_is_refused_naming_alternatives() -> None:
    with pytest.raises(UsageError) as caught:
        catalog_model("microsoft/Phi-3-mini-4k-instruct", today=date(2026, 1, 1))
    assert "retired by Azure on 2025-08-30; use Phi-4-mini-instruct" in str(caught.value)
    assert (
        catalog_model("Phi-3-mini-4k-instruct", today=date(2025, 8, 1)).registry_name
        == "Phi-3-mini-4k-instruct"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--method", "catalog", "--model", "microsoft/Phi-3-mini-4k-instruct"],
            "retired by Azure on 2025-08-30",
        ),
        (
            ["--method", "serverless", "--model", "Phi-3.5-mini-instruct"],
            "retired by Azure on 2025-08-30; use Phi-4-mini-instruct (for --method serverless)",
        ),
        (["--method", "catalog", "--model", "gpt-2"], "is not a catalog model this tool knows"),
        (
            ["--method", "catalog", "--auto-split"],
            "--auto-split: not an option of --method catalog",
        ),
        (["--method", "serverless", "--lora"], "--lora: not an option of --method serverless"),
        (["--method", "custom", "--epochs", "2"], "--epochs: not an option of --method custom"),
        (["--method", "catalog", "--num_train_epochs", "2"], "TRL arguments, --profile, --nodes"),
        (["--method", "catalog", "--lr-scheduler", "warp"], "--lr-scheduler 'warp'"),
        (
            ["--method", "serverless", "--learning-rate", "5"],
            "--learning-rate 5: must be above 0 and below 1",
        ),
        (
            ["--method", "custom", "--learning-rate", "1e-4"],
            "--learning-rate: not an option of --method custom",
        ),
    ],
)
def test_bad_choices_are_refused_before_anything_is_sent(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["finetune", "submit", "--outputs", "outputs.json", "--dry-run", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("method", ["catalog", "serverless"])
def test_the_dry_run_names_the_label_it_resolves_or_the_version_it_sends(
    method: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["finetune", "submit", "--outputs", "outputs.json", "--dry-run", "--method", method])
        == 0
    )
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        "# model: azureml://registries/azureml/models/Phi-4-mini-instruct/labels/latest is "
        "resolved to .../versions/N at submit (one registry read); --model-version N sends "
        "that version"
    )
    job = dry_run(workdir, capsys, "--method", method, "--model-version", "7")
    sent = (
        job.jobs["chat_completion"].inputs["mlflow_model_path"]._data.path
        if method == "catalog"
        else job.model.path
    )
    assert sent == "azureml://registries/azureml/models/Phi-4-mini-instruct/versions/7"


class RegistryModels:
    """A registry client's `models`, answering `get(name, label="latest")` with azure-ai-ml's
    own Model entity, as the registry would."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.asked: list[tuple[str, str | None]] = []

    def get(self, name: str, version: str | None = None, label: str | None = None) -> Any:
        from azure.ai.ml.entities import Model

        self.asked.append((name, label))
        return Model(name=name, version=self.version, path="azureml://registries/azureml")


@pytest.mark.parametrize("method", ["catalog", "serverless"])
def test_submit_sends_the_version_the_latest_label_names_after_one_read(
    method: str, workdir: Path
) -> None:
    from finetune_phi.cloud.finetune import methods
    from finetune_phi.core.stack_outputs import from_file

    options = methods.SubmitOptions(
        train_file=workdir / "data" / "train_data.jsonl",
        eval_file=workdir / "data" / "eval_data.jsonl",
        method=method,
    )
    registry = RegistryModels("12")
    pinned = methods.pin_model_version(options, lambda: registry)
    assert registry.asked == [("Phi-4-mini-instruct", "latest")]
    planned = pinned.finetune_method.plan(pinned.request(), from_file(workdir / "outputs.json"))
    assert "Phi-4-mini-instruct/labels/latest" not in planned.spec
    assert "azureml://registries/azureml/models/Phi-4-mini-instruct/versions/12" in planned.spec
    # Given, it is sent as given: nothing is read.
    given = methods.pin_model_version(
        methods.SubmitOptions(
            options.train_file, options.eval_file, method, values={"model_version": 3}
        ),
        lambda: pytest.fail("no registry client when the version is given"),
    )
    assert given.values["model_version"] == 3
    assert len(registry.asked) == 1


def test_the_custom_method_takes_no_model_version(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["finetune", "submit", "--outputs", "outputs.json", "--dry-run", "--model-version", "3"]
    assert main(args) == 2
    assert "--model-version: not an option of --method custom" in capsys.readouterr().err


def test_a_model_version_below_one_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--method", "serverless", "--model-version", "0"]
    assert main(["finetune", "submit", "--outputs", "outputs.json", "--dry-run", *args]) == 2
    assert "--model-version 0: must be a version number, 1 or more" in capsys.readouterr().err


def test_phi_4_fine_tunes_on_the_catalog_path_with_its_registry_specs_defaults(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = dry_run(
        workdir, capsys, "--method", "catalog", "--model", "Phi-4", "--model-version", "8"
    )
    inputs = {name: value._data for name, value in job.jobs["chat_completion"].inputs.items()}
    assert (
        inputs["mlflow_model_path"].path == "azureml://registries/azureml/models/Phi-4/versions/8"
    )
    # 14B parameters: the spec's DeepSpeed and lower learning rate, unless told otherwise.
    assert (inputs["apply_deepspeed"], inputs["learning_rate"], inputs["lr_scheduler_type"]) == (
        "true",
        5e-6,
        "cosine",
    )
    job = dry_run(workdir, capsys, "--method", "catalog", "--model", "Phi-4", "--no-deepspeed")
    assert job.jobs["chat_completion"].inputs["apply_deepspeed"]._data == "false"
    assert "Standard_NC24ads_A100_v4" in catalog_model("Phi-4").catalog_computes
