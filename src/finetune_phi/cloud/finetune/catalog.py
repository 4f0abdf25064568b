"""The catalog path: the model catalog's chat-completion fine-tuning pipeline, run on the
stack's GPU cluster with the registry's own components (no script of ours)."""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from finetune_phi.cloud.environment import tags
from finetune_phi.cloud.finetune import MODEL_OUTPUT
from finetune_phi.cloud.finetune.data_assets import references
from finetune_phi.cloud.finetune.method import (
    BATCH_SIZE,
    EPOCHS,
    LEARNING_RATE,
    MODEL_VERSION,
    Finding,
    FinetuneMethod,
    PlannedJob,
    Request,
    Site,
    check_model_version,
    option,
)
from finetune_phi.cloud.finetune.models import REGISTRY, Offer, registry_id, unpinned_note
from finetune_phi.core.azure_facts import DEFAULT_CATALOG_MODEL, MANAGED_DPO, MODELS, Model
from finetune_phi.core.errors import UsageError
from finetune_phi.core.stack_outputs import StackOutputs

CATALOG_PIPELINE = (
    f"azureml://registries/{REGISTRY}/components/chat_completion_pipeline/labels/latest"
)
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
)


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
            raise UsageError(f"--learning-rate {self.learning_rate:g}: must be above 0 and below 1")
        if self.lr_scheduler_type not in SCHEDULERS:
            raise UsageError(
                f"--lr-scheduler {self.lr_scheduler_type!r}: must be one of {', '.join(SCHEDULERS)}"
            )
        if not 1 <= self.num_train_epochs <= 100:
            raise UsageError(f"--epochs {self.num_train_epochs}: must be between 1 and 100")
        if not 1 <= self.per_device_train_batch_size <= 64:
            raise UsageError(
                f"--batch-size {self.per_device_train_batch_size}: must be between 1 and 64"
            )


def catalog_pipeline(
    model: Model,
    compute: str,
    train_data: str,
    validation_data: str,
    hyperparameters: CatalogHyperparameters,
    experiment: str,
    model_version: int | None = None,
) -> dict[str, Any]:
    """The pipeline job running the registry's chat-completion fine-tuning pipeline.

    Its output is named `model`, like the custom script's, so `phi deploy` registers it
    the same way.
    """
    hp = hyperparameters
    return {
        "$schema": "https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json",
        "type": "pipeline",
        "display_name": f"catalog fine-tune {model.registry_name}",
        "experiment_name": experiment,
        "description": f"The model catalog's chat-completion fine-tuning of {model.registry_name}; MLflow model in outputs.{MODEL_OUTPUT}.",
        "tags": tags(method="catalog"),
        "settings": {"default_compute": f"azureml:{compute}"},
        "outputs": {MODEL_OUTPUT: {"type": "mlflow_model"}},
        "jobs": {
            "chat_completion": {
                "type": "pipeline",
                "component": CATALOG_PIPELINE,
                "inputs": {
                    "mlflow_model_path": {
                        "type": "mlflow_model",
                        "path": registry_id(model, model_version),
                    },
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
                "outputs": {"mlflow_model_folder": f"${{{{parent.outputs.{MODEL_OUTPUT}}}}}"},
            }
        },
    }


def load_pipeline(spec: dict[str, Any]) -> Any:
    """The pipeline spec as azure-ai-ml's PipelineJob, through its own loader and schema."""
    from azure.ai.ml import load_job

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pipeline.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return load_job(path)


LR_SCHEDULER = option("--lr-scheduler", help="scheduler (default linear)")
LORA = option("--lora", action=argparse.BooleanOptionalAction, help="LoRA (default on)")
DEEPSPEED = option(
    "--deepspeed", action=argparse.BooleanOptionalAction, help="DeepSpeed (default off)"
)
OFFER = Offer(
    "catalog", lambda model: model.catalog_finetune, "the catalog's pipeline does not fine-tune it"
)


def hyperparameters(request: Request) -> CatalogHyperparameters:
    """The pipeline's defaults, then the model's own from its registry spec (Phi-4: DeepSpeed
    on, a lower learning rate), overridden by what was given."""
    given = {
        "learning_rate": request.value(LEARNING_RATE),
        "lr_scheduler_type": request.value(LR_SCHEDULER),
        "num_train_epochs": request.value(EPOCHS),
        "per_device_train_batch_size": request.value(BATCH_SIZE),
        "apply_lora": request.value(LORA),
        "apply_deepspeed": request.value(DEEPSPEED),
    }
    chosen: dict[str, Any] = dict(OFFER.model(request.model).catalog_defaults)
    chosen.update((key, value) for key, value in given.items() if value is not None)
    return replace(CatalogHyperparameters(), **chosen)


def check(request: Request) -> None:
    hyperparameters(request).check()
    check_model_version(request)


def plan(request: Request, outputs: StackOutputs) -> PlannedJob:
    data = references(request.train_file, request.eval_file)
    spec = catalog_pipeline(
        OFFER.model(request.model),
        outputs.require("gpuComputeName")["gpuComputeName"],
        data["train_data"],
        data["eval_data"],
        hyperparameters(request),
        request.experiment,
        request.value(MODEL_VERSION),
    )
    note = "" if request.value(MODEL_VERSION) else unpinned_note(OFFER.model(request.model))
    return PlannedJob(load_pipeline(spec), note + yaml.safe_dump(spec, sort_keys=False))


def preflight(site: Site) -> list[Finding]:
    model = MODELS[DEFAULT_CATALOG_MODEL]
    return [
        Finding(
            OFFER.offers(model), f"catalog: {model.registry_name} fine-tunes on the stack's cluster"
        )
    ]


METHOD = FinetuneMethod(
    name="catalog",
    help="the model catalog's fine-tuning pipeline on the GPU cluster",
    options=(EPOCHS, BATCH_SIZE, LEARNING_RATE, MODEL_VERSION, LR_SCHEDULER, LORA, DEEPSPEED),
    check=check,
    plan=plan,
    workspace_output="workspaceName",
    default_model=DEFAULT_CATALOG_MODEL,
    offer=OFFER,
    preflight=preflight,
    trainer_refusal="runs the registry's chat-completion pipeline, supervised fine-tuning on "
    f"chat data only; {MANAGED_DPO}",
)
