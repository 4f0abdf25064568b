"""The registry of fine-tuning methods: a fourth method is one module's worth of code and one
`register` call; `phi finetune submit` and `phi doctor` take it with no edit elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from finetune_phi.cli.main import main
from finetune_phi.cloud.doctor import Preflight, check_models
from finetune_phi.cloud.finetune.method import (
    EPOCHS,
    Finding,
    FinetuneMethod,
    PlannedJob,
    Request,
    Site,
    option,
)
from finetune_phi.cloud.finetune.methods import METHODS, register
from finetune_phi.core.errors import UsageError
from finetune_phi.core.stack_outputs import StackOutputs
from tests.support import EXAMPLE_OUTPUTS, submit_workdir

# --- what a method module holds ---

TEMPERATURE = option("--temperature", type=float, help="sampling temperature of the distiller")


def check(request: Request) -> None:
    temperature = request.value(TEMPERATURE)
    if temperature is not None and not 0 < temperature <= 2:
        raise UsageError(f"--temperature {temperature:g}: must be above 0 and at most 2")


def plan(request: Request, outputs: StackOutputs) -> PlannedJob:
    spec = {
        "type": "distill",
        "workspace": outputs.require("workspaceName")["workspaceName"],
        "model": request.model,
        "temperature": request.value(TEMPERATURE),
        "epochs": request.value(EPOCHS),
    }
    return PlannedJob(spec, yaml.safe_dump(spec, sort_keys=False))


def preflight(site: Site) -> list[Finding]:
    return [Finding(site.location == "eastus2", f"distill: offered in {site.location}")]


DISTILL = FinetuneMethod(
    name="distill",
    help="a throw-away fourth method",
    options=(TEMPERATURE, EPOCHS),
    check=check,
    plan=plan,
    workspace_output="workspaceName",
    default_model="Phi-4-mini-instruct",
    preflight=preflight,
)

# --- the tests ---


@pytest.fixture
def distill() -> Iterator[FinetuneMethod]:
    register(DISTILL)
    try:
        yield DISTILL
    finally:
        del METHODS[DISTILL.name]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return submit_workdir(tmp_path, monkeypatch, EXAMPLE_OUTPUTS)


def submit(*args: str) -> int:
    return main(["finetune", "submit", "--outputs", "outputs.json", "--dry-run", *args])


@pytest.mark.usefixtures("distill")
def test_a_registered_method_takes_its_own_options(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert submit("--method", "distill", "--temperature", "0.7", "--epochs", "2") == 0
    spec = yaml.safe_load(capsys.readouterr().out)
    assert spec == {
        "type": "distill",
        "workspace": EXAMPLE_OUTPUTS["workspaceName"],
        "model": "Phi-4-mini-instruct",
        "temperature": 0.7,
        "epochs": 2,
    }


@pytest.mark.usefixtures("distill")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--method", "distill", "--lora"],
            "--lora: not an option of --method distill; --method catalog takes",
        ),
        (
            ["--method", "distill", "--num_train_epochs", "1"],
            "TRL arguments (--num_train_epochs ...): not an option of --method distill",
        ),
        (
            ["--method", "custom", "--temperature", "0.7"],
            "--temperature: not an option of --method custom; --method distill takes --temperature",
        ),
        (
            ["--method", "distill", "--temperature", "5"],
            "--temperature 5: must be above 0 and at most 2",
        ),
    ],
)
def test_a_registered_method_is_refused_what_it_does_not_take(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert submit(*args) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.err.count("\n") == 1
    assert captured.out == ""


@pytest.mark.usefixtures("distill")
def test_help_lists_a_registered_method_and_its_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["finetune", "submit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "{custom,catalog,serverless,distill}" in out
    assert "distill: a throw-away fourth method" in out
    assert "--method catalog, serverless, distill: --epochs" in out
    assert "--method distill: --temperature TEMPERATURE sampling temperature" in out


@pytest.mark.usefixtures("distill")
def test_phi_doctor_runs_a_registered_methods_checks() -> None:
    plan = Preflight(
        subscription_id="sub-1",
        location="westeurope",
        resource_group="rg",
        key_vault="kv",
        log_analytics="log",
        ml_workspaces=("mlw",),
        storage_account="st",
        container_registry="cr",
        gpu_vm_size="Standard_NC24ads_A100_v4",
        gpu_max_nodes=1,
        foundry=False,
    )
    rows = [(row.check, row.result, row.detail) for row in check_models(plan)]
    assert rows[-1] == ("models", "FAIL", "distill: offered in westeurope")
    assert (
        "models",
        "pass",
        "catalog: Phi-4-mini-instruct fine-tunes on the stack's cluster",
    ) in rows


@pytest.mark.usefixtures("distill")
def test_a_method_cannot_take_a_name_or_an_option_spelling_twice() -> None:
    with pytest.raises(ValueError, match="'distill' is registered already"):
        register(DISTILL)
    other = option("--epochs", type=str, help="a different --epochs")
    clash = FinetuneMethod(
        name="clash",
        help="clashes",
        options=(other,),
        check=check,
        plan=plan,
        workspace_output="workspaceName",
        default_model="Phi-4-mini-instruct",
    )
    with pytest.raises(ValueError, match="--epochs differs from the --epochs of --method catalog"):
        register(clash)
    assert "clash" not in METHODS


def test_every_method_fine_tunes_the_same_base_model_by_default() -> None:
    """Comparing methods compares methods, not models: the custom path's Hugging Face
    default is the catalog and serverless default's hub copy."""
    from finetune_phi.cloud.finetune import methods
    from finetune_phi.core.azure_facts import MODELS

    hub_ids = {
        MODELS[m.default_model].hub_id if m.default_model in MODELS else m.default_model
        for m in methods.METHODS.values()
    }
    assert hub_ids == {"microsoft/Phi-4-mini-instruct"}
