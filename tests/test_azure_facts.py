"""The table of Azure facts: every default this repository ships is current, every row has
a source and a date, and retired choices are refused before anything is sent."""

from __future__ import annotations

import json
import re
import sys
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from finetune_phi.cli.main import main
from finetune_phi.core import azure_facts
from finetune_phi.core.azure_facts import (
    BASE_IMAGES,
    CHECKED,
    MODELS,
    VM_SIZES,
    retirement_problem,
)
from finetune_phi.core.config import ConfigError, parse
from finetune_phi.core.folders import SCORE_SOURCE
from tests.support import EXAMPLE_OUTPUTS, submit_workdir

SHIPPED_DEFAULTS = [
    ("vm", azure_facts.DEFAULT_TRAINING_VM),
    ("vm", azure_facts.DEFAULT_SERVING_VM),
    ("vm", azure_facts.DEFAULT_CPU_VM),
    ("vm", azure_facts.DEFAULT_CPU_SERVING_VM),
    ("model", azure_facts.DEFAULT_CATALOG_MODEL),
    ("image", azure_facts.DEFAULT_BASE_IMAGE.reference),
]


@pytest.mark.parametrize(("kind", "name"), SHIPPED_DEFAULTS, ids=lambda v: str(v))
def test_no_shipped_default_has_passed_its_retirement_date(kind: str, name: str) -> None:
    """Fails on the day Azure retires a default: update the table and the default then."""
    assert retirement_problem(kind, name) is None
    known: dict[str, dict[str, Any]] = {"vm": VM_SIZES, "model": MODELS, "image": BASE_IMAGES}
    assert name.split(":")[0] in known[kind]


def test_every_row_has_a_source_and_the_table_a_check_date() -> None:
    assert date.today() >= CHECKED
    rows: list[Any] = [*VM_SIZES.values(), *MODELS.values(), *BASE_IMAGES.values()]
    assert all(row.source for row in rows)
    assert all(
        row.replacement
        for row in rows
        if getattr(row, "retired", None) or getattr(row, "deprecated", None)
    )


def test_the_job_image_is_the_cuda_line_of_the_torch_it_installs() -> None:
    """torch's CUDA libraries come from its wheel; the image's CUDA must be of the same line."""
    image = azure_facts.DEFAULT_BASE_IMAGE
    assert image.cuda == azure_facts.AZURE_TORCH.cuda
    assert image.name.endswith(f"cuda{image.cuda}-ubuntu24.04")
    assert image.deprecated is None


def test_the_default_serving_size_holds_a_3_8b_model_in_half_precision() -> None:
    size = VM_SIZES[azure_facts.DEFAULT_SERVING_VM]
    assert size.gpus >= 1
    assert size.gpu_memory_gb > 3.8e9 * 2 / 1e9


def test_retired_choices_name_the_date_and_the_replacement() -> None:
    problem = retirement_problem("vm", "Standard_NC6s_v3")
    assert problem is not None
    assert "2025-09-30" in problem
    assert "Standard_NC24ads_A100_v4" in problem
    assert retirement_problem("vm", "Standard_NC6s_v3", today=date(2025, 9, 29)) is None
    model = retirement_problem("model", "Phi-3.5-mini-instruct")
    assert model is not None
    assert "2025-08-30" in model
    assert "Phi-4-mini-instruct" in model


def test_the_stack_refuses_a_retired_cluster_size() -> None:
    with pytest.raises(ConfigError) as caught:
        parse({"gpuVmSize": "Standard_NC6s_v3"}, stack="dev", subscription_id="s")
    [problem] = caught.value.problems
    assert problem.startswith("finetune-phi:gpuVmSize = 'Standard_NC6s_v3': ")
    assert "retired by Azure on 2025-09-30" in problem


@pytest.mark.parametrize(
    "args",
    [
        ["--instance-type", "Standard_NC6s_v3"],
        ["--instance-type", "Standard_NC24s_v3"],
    ],
)
def test_deploy_refuses_a_retired_size_by_name(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs.json").write_text(
        json.dumps(
            {
                "subscriptionId": "s",
                "resourceGroupName": "g",
                "workspaceName": "w",
                "endpointName": "e-1",
                "identityClientId": "c",
            }
        )
    )
    assert main(["deploy", "--outputs", "outputs.json", "--dry-run", "--job", "j", *args]) == 2
    captured = capsys.readouterr()
    assert "retired by Azure on 2025-09-30" in captured.err
    assert captured.out == ""


RETIRED_SIZES_AND_IMAGES = [
    *(name for name, size in VM_SIZES.items() if size.retired),
    *(name for name, image in BASE_IMAGES.items() if image.deprecated),
]
RETIRED_CATALOG_MODELS = [name for name, model in MODELS.items() if model.retired]
OUTPUTS = EXAMPLE_OUTPUTS


@pytest.mark.parametrize(
    "command",
    [
        ["finetune", "submit", "--method", "custom"],
        ["finetune", "submit", "--method", "catalog"],
        ["finetune", "submit", "--method", "serverless"],
        ["deploy", "--job", "j1"],
        ["deploy", "--serverless"],
    ],
    ids=" ".join,
)
def test_every_dry_run_shows_only_current_models_sizes_and_images(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    submit_workdir(tmp_path, monkeypatch, OUTPUTS)
    assert main([*command, "--outputs", "outputs.json", "--dry-run"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert printed
    for name in RETIRED_SIZES_AND_IMAGES:
        assert name not in printed, name
    if command[-1] == "custom":
        # The custom path fine-tunes the Hugging Face copy of the catalog's default.
        assert "--model_name_or_path microsoft/Phi-4-mini-instruct" in printed
    else:
        for name in RETIRED_CATALOG_MODELS:
            assert f"/{name}/" not in printed, name


def load_score() -> Any:
    sys.path.insert(0, str(SCORE_SOURCE))
    try:
        import score  # type: ignore[import-not-found]  # the scoring script, as Azure ML loads it

        return score
    finally:
        sys.path.pop(0)


@pytest.mark.parametrize(
    ("gpu", "capability", "expected"),
    [
        (False, None, ("cpu", "float32")),
        (True, (7, 5), ("cuda", "float16")),
        (True, (8, 0), ("cuda", "bfloat16")),
        (True, (9, 0), ("cuda", "bfloat16")),
    ],
)
def test_the_scoring_script_picks_precision_from_the_gpu(
    gpu: bool, capability: tuple[int, int] | None, expected: tuple[str, str]
) -> None:
    fake = SimpleNamespace(
        cuda=SimpleNamespace(is_available=lambda: gpu, get_device_capability=lambda: capability),
        float32="float32",
        float16="float16",
        bfloat16="bfloat16",
    )
    assert load_score().precision(fake) == expected


def test_exactly_the_sizes_azure_exempts_skip_the_deployment_reserve() -> None:
    """The SKU list's "Skip 20% Reservation" column (azure_facts.SKIPS_RESERVATION), row by
    row: an exempt size counted with the reserve asks for quota it does not need, and the
    other way round `phi doctor` passes a deployment Azure refuses."""
    assert len(azure_facts.SKIPS_RESERVATION) == 10
    assert {name: size.skips_reservation for name, size in VM_SIZES.items()} == {
        name: name in azure_facts.SKIPS_RESERVATION for name in VM_SIZES
    }


DATED = re.compile(r"\b\d{2}/\d{2}/\d{4}\b|\b\d{4}-\d{2}-\d{2}\b")
MOVED_OR_MISNAMED = [
    "sizes/gpu-accelerated/nc-a100-v4-series.md",  # the file is nca100v4-series.md
    "sizes/gpu-accelerated/ndm-a100-v4-series.md",  # the file is ndma100v4-series.md
    "articles/ai-foundry/concepts/model-lifecycle-retirement.md (",  # the table moved
    "articles/ai-foundry/includes/region-availability-maas.md",  # now foundry-classic
]


def test_every_source_is_dated_and_none_cites_a_moved_or_misnamed_file() -> None:
    rows: list[Any] = [*VM_SIZES.values(), *MODELS.values(), *BASE_IMAGES.values()]
    for row in rows:
        assert DATED.search(row.source), row
        for wrong in MOVED_OR_MISNAMED:
            assert wrong not in row.source, (row, wrong)
    assert "concepts-model-retirement-schedule-content.md (ms.date 07/07/2026" in (
        MODELS["Phi-3.5-mini-instruct"].source
    )
    assert "(ms.date 10/18/2025" in VM_SIZES["Standard_NC4as_T4_v3"].source


def test_each_base_image_names_where_mcr_lists_its_tags() -> None:
    image = azure_facts.DEFAULT_BASE_IMAGE
    assert image.tags_url == (
        "https://mcr.microsoft.com/v2/azureml/openmpi5.0-cuda12.8-ubuntu24.04/tags/list"
    )
    assert azure_facts.BASE_IMAGE_MAX_AGE_DAYS == 180


def test_content_safety_facts_are_dated_and_the_code_reads_them_from_the_table() -> None:
    """One place for the service's contract and limits: the client, the stack's config and
    the role the stack grants read them from azure_facts, each with its source and date."""
    from finetune_phi.core import config, roles
    from finetune_phi.safety import client

    assert date.today() >= azure_facts.CONTENT_SAFETY_CHECKED
    assert (client.API_VERSION, client.PATH, client.SCOPE, client.MAX_TEXT) == (
        "2024-09-01",
        "/contentsafety/text:analyze",
        "https://cognitiveservices.azure.com/.default",
        10_000,
    )
    assert client.API_VERSION is azure_facts.CONTENT_SAFETY_API_VERSION
    assert client.DEFAULT_RATE == azure_facts.CONTENT_SAFETY_REQUESTS_PER_SECOND["F0"] == 5
    assert azure_facts.CONTENT_SAFETY_REQUESTS_PER_SECOND["S0"] * 10 == 1000  # 1000 per 10 s
    assert config.CONTENT_SAFETY_SKUS is azure_facts.CONTENT_SAFETY_SKUS == ("S0", "F0")
    assert config.CONTENT_SAFETY_REGIONS is azure_facts.CONTENT_SAFETY_REGIONS
    assert azure_facts.CONTENT_SAFETY_REGIONS <= azure_facts.REGIONS
    assert roles.BuiltInRole.COGNITIVE_SERVICES_USER.value == azure_facts.COGNITIVE_SERVICES_USER
    meter = azure_facts.CONTENT_SAFETY_TEXT_METER
    assert (meter.product, meter.sku, meter.meter, meter.unit) == (
        "Content Safety",
        "Standard",
        "Standard Text Records",
        "1K",
    )
    assert DATED.search(meter.source)
    for name in ("_CS_SPEC", "_CS_OVERVIEW"):
        assert DATED.search(getattr(azure_facts, name)), name


def test_the_local_auth_built_in_is_the_one_the_policy_pack_names() -> None:
    builtin = azure_facts.POLICY_BUILTINS["ai-services-local-auth-disabled"]
    assert builtin.guid == "71ef260a-8f18-47b7-abcb-62d0673d94dc"
    assert builtin.path == "Azure Ai Services/DisableLocalAuth_Audit.json"
