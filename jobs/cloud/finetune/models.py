"""The models the catalog and serverless paths can fine-tune, as Azure's registry names them.

What the catalog offers changes; `MODELS` is the one place that records it. A model not
listed, or listed as retired, is refused before anything is sent, naming the alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from jobs.errors import UsageError

REGISTRY = "azureml"


@dataclass(frozen=True)
class CatalogModel:
    name: str
    """Asset name in the `azureml` registry."""
    finetune_retired: date | None = None
    serverless_regions: tuple[str, ...] = ()
    """Regions whose hubs offer pay-as-you-go (serverless) fine-tuning of the model."""


MODELS = {
    model.name: model
    for model in (
        CatalogModel("Phi-3-mini-4k-instruct", finetune_retired=date(2025, 8, 30)),
        CatalogModel("Phi-3.5-mini-instruct", serverless_regions=("eastus2",)),
        CatalogModel("Phi-4-mini-instruct", serverless_regions=("eastus2",)),
    )
}


def catalog_model(requested: str, today: date | None = None) -> CatalogModel:
    """The registry model for `--model` (`microsoft/Phi-3.5-mini-instruct` or its asset name)."""
    name = requested.removeprefix("microsoft/")
    offered = [m.name for m in MODELS.values() if m.finetune_retired is None]
    model = MODELS.get(name)
    if model is None:
        raise UsageError(
            f"--model {requested!r} is not a catalog model this tool knows; choose one of {', '.join(offered)}"
        )
    if model.finetune_retired is not None and (today or date.today()) >= model.finetune_retired:
        raise UsageError(
            f"--model {requested!r}: fine-tuning of {name} was retired on {model.finetune_retired:%Y-%m-%d}; "
            f"choose one of {', '.join(offered)}"
        )
    return model


def registry_id(model: CatalogModel) -> str:
    return f"azureml://registries/{REGISTRY}/models/{model.name}/labels/latest"
