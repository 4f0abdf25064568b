"""The model a catalog or serverless fine-tune starts from, looked up in the table of Azure
facts (`infra/azure_facts.py`): offered, not retired, and in the stack's region."""

from __future__ import annotations

from datetime import date

from infra.azure_facts import MODELS, Model, retirement_problem
from jobs.errors import UsageError

REGISTRY = "azureml"


def offered(method: str, today: date | None = None) -> list[str]:
    """Registry names the method can fine-tune today."""
    return [
        name
        for name, model in MODELS.items()
        if retirement_problem("model", name, today) is None
        and (model.catalog_finetune if method == "catalog" else bool(model.serverless_regions))
    ]


def catalog_model(requested: str, method: str = "catalog", today: date | None = None) -> Model:
    """The registry model for `--model` (`microsoft/Phi-4-mini-instruct` or its asset name),
    refused before anything is sent when `method` cannot fine-tune it today."""
    name = requested.removeprefix("microsoft/")
    model = next((m for m in MODELS.values() if name.lower() == m.registry_name.lower()), None)
    choices = ", ".join(offered(method, today))
    if model is None:
        raise UsageError(
            f"--model {requested!r} is not a catalog model this tool knows; choose one of {choices}"
        )
    retired = retirement_problem("model", model.registry_name, today)
    if retired is not None:
        raise UsageError(f"--model {requested!r}: {retired} (for --method {method})")
    if method == "catalog" and not model.catalog_finetune:
        raise UsageError(
            f"--model {requested!r}: the catalog's pipeline does not fine-tune it; choose one of {choices}"
        )
    if method == "serverless" and not model.serverless_regions:
        raise UsageError(
            f"--model {requested!r}: not offered for serverless fine-tuning; choose one of {choices}"
        )
    return model


def registry_id(model: Model) -> str:
    return f"azureml://registries/{REGISTRY}/models/{model.registry_name}/labels/latest"
