"""The tutorials' two script-free fine-tuning paths: the model catalog's pipeline, and
serverless fine-tuning (fine-tuning as a service) in a hub-based Foundry project.

What the catalog offers changes; `MODELS` is the one place that records it, with the
source of each fact. A model not listed, or listed as retired, is refused before anything
is sent, naming the alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

REGISTRY = "azureml"
CATALOG_PIPELINE = (
    f"azureml://registries/{REGISTRY}/components/chat_completion_pipeline/labels/latest"
)


class CatalogError(ValueError):
    """A model, region or option the chosen path does not offer."""


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
        # Fine-tune and inference retirement on 2025-08-30 (the design notes).
        CatalogModel("Phi-3-mini-4k-instruct", finetune_retired=date(2025, 8, 30)),
        # Phi-3-family pay-as-you-go fine-tuning: hubs in East US 2 only (Phi cookbook).
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
        raise CatalogError(
            f"--model {requested!r} is not a catalog model this tool knows; choose one of {', '.join(offered)}"
        )
    if model.finetune_retired is not None and (today or date.today()) >= model.finetune_retired:
        raise CatalogError(
            f"--model {requested!r}: fine-tuning of {name} was retired on {model.finetune_retired:%Y-%m-%d}; "
            f"choose one of {', '.join(offered)}"
        )
    return model


def registry_id(model: CatalogModel) -> str:
    return f"azureml://registries/{REGISTRY}/models/{model.name}/labels/latest"


@dataclass(frozen=True)
class CatalogHyperparameters:
    learning_rate: float = 2e-5
    lr_scheduler_type: str = "linear"
    num_train_epochs: int = 1
    per_device_train_batch_size: int = 1
    apply_lora: bool = True
    apply_deepspeed: bool = False

    def check(self) -> None:
        if not 0 < self.learning_rate < 1:
            raise CatalogError(
                f"--learning-rate {self.learning_rate:g}: must be above 0 and below 1"
            )
        schedulers = (
            "linear",
            "cosine",
            "cosine_with_restarts",
            "polynomial",
            "constant",
            "constant_with_warmup",
        )
        if self.lr_scheduler_type not in schedulers:
            raise CatalogError(
                f"--lr-scheduler {self.lr_scheduler_type!r}: must be one of {', '.join(schedulers)}"
            )
        if not 1 <= self.num_train_epochs <= 100:
            raise CatalogError(f"--epochs {self.num_train_epochs}: must be between 1 and 100")
        if not 1 <= self.per_device_train_batch_size <= 64:
            raise CatalogError(
                f"--batch-size {self.per_device_train_batch_size}: must be between 1 and 64"
            )


def catalog_pipeline(
    model: CatalogModel,
    compute: str,
    train_data: str,
    validation_data: str,
    hyperparameters: CatalogHyperparameters,
    experiment: str,
) -> dict[str, Any]:
    """The pipeline job running the registry's chat-completion fine-tuning pipeline.

    Its output is named `model`, like the custom script's, so `phi deploy` registers it
    the same way.
    """
    hp = hyperparameters
    return {
        "$schema": "https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json",
        "type": "pipeline",
        "display_name": f"catalog fine-tune {model.name}",
        "experiment_name": experiment,
        "description": f"The model catalog's chat-completion fine-tuning of {model.name}; MLflow model in outputs.model.",
        "tags": {"project": "finetune-phi", "method": "catalog"},
        "settings": {"default_compute": f"azureml:{compute}"},
        "outputs": {"model": {"type": "mlflow_model"}},
        "jobs": {
            "chat_completion": {
                "type": "pipeline",
                "component": CATALOG_PIPELINE,
                "inputs": {
                    "mlflow_model_path": {"type": "mlflow_model", "path": registry_id(model)},
                    **{
                        f"compute_{step}": compute
                        for step in ("model_import", "preprocess", "finetune", "model_evaluation")
                    },
                    "train_file_path": {"type": "uri_file", "path": train_data},
                    "validation_file_path": {"type": "uri_file", "path": validation_data},
                    "learning_rate": hp.learning_rate,
                    "lr_scheduler_type": hp.lr_scheduler_type,
                    "num_train_epochs": hp.num_train_epochs,
                    "per_device_train_batch_size": hp.per_device_train_batch_size,
                    "apply_lora": str(hp.apply_lora).lower(),
                    "apply_deepspeed": str(hp.apply_deepspeed).lower(),
                },
                "outputs": {"mlflow_model_folder": "${{parent.outputs.model}}"},
            }
        },
    }


def load_pipeline(spec: dict[str, Any]) -> Any:
    """The pipeline spec as azure-ai-ml's PipelineJob, through its own loader and schema."""
    import tempfile
    from pathlib import Path

    import yaml
    from azure.ai.ml import load_job

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pipeline.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return load_job(path)


@dataclass(frozen=True)
class ServerlessHyperparameters:
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None
    n_epochs: int | None = None

    def check(self) -> None:
        if self.batch_size is not None and not 1 <= self.batch_size <= 64:
            raise CatalogError(f"--batch-size {self.batch_size}: must be between 1 and 64")
        if (
            self.learning_rate_multiplier is not None
            and not 0 < self.learning_rate_multiplier <= 10
        ):
            raise CatalogError(
                f"--learning-rate-multiplier {self.learning_rate_multiplier:g}: must be above 0 and at most 10 "
                "(0.02-0.2 is the documented range to start from)"
            )
        if self.n_epochs is not None and not 1 <= self.n_epochs <= 100:
            raise CatalogError(f"--epochs {self.n_epochs}: must be between 1 and 100")

    def as_strings(self) -> dict[str, str]:
        """Only what was given: the service picks the rest from the data."""
        return {key: str(value) for key, value in vars(self).items() if value is not None}


def serverless_job(
    model: CatalogModel,
    region: str,
    train_data: str,
    validation_data: str | None,
    hyperparameters: ServerlessHyperparameters,
    output_model_name: str,
) -> Any:
    """azure-ai-ml's fine-tuning-as-a-service job; validation None means an automatic split."""
    if region not in model.serverless_regions:
        raise CatalogError(
            f"serverless fine-tuning of {model.name} is offered in {', '.join(model.serverless_regions) or 'no region'}, "
            f"not in the stack's region {region}; use --method catalog or custom, or a stack in "
            f"{model.serverless_regions[0] if model.serverless_regions else 'a supported region'}"
        )
    from azure.ai.ml.finetuning import FineTuningTaskType, create_finetuning_job

    job = create_finetuning_job(
        model=registry_id(model),
        task=FineTuningTaskType.CHAT_COMPLETION,
        training_data=train_data,
        # azure-ai-ml 1.35 raises UnboundLocalError when validation_data is None: build the
        # job with the training data in its place, then take it out again.
        validation_data=validation_data or train_data,
        hyperparameters=hyperparameters.as_strings(),
        output_model_name_prefix=output_model_name,
    )
    if validation_data is None:
        job.validation_data = None  # type: ignore[assignment]  # the service splits the training data
    return job
