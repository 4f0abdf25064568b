"""The serverless path: fine-tuning as a service (pay-as-you-go) in a hub-based Foundry
project, with azure-ai-ml's fine-tuning job. The service runs its own recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
from finetune_phi.cloud.finetune.models import Offer, registry_id, unpinned_note
from finetune_phi.cloud.specs import to_yaml
from finetune_phi.core.azure_facts import DEFAULT_CATALOG_MODEL, MANAGED_DPO, MODELS, Model
from finetune_phi.core.errors import UsageError
from finetune_phi.core.stack_outputs import StackOutputs


@dataclass(frozen=True)
class ServerlessHyperparameters:
    """What the service is told, in the names azure-ai-ml's own sample sends (the portal
    labels them batch size, learning rate multiplier and epochs). Only what was given is sent:
    the service picks the rest from the data."""

    per_device_train_batch_size: int | None = None
    learning_rate: float | None = None
    num_train_epochs: int | None = None

    def check(self) -> None:
        batch, rate, epochs = (
            self.per_device_train_batch_size,
            self.learning_rate,
            self.num_train_epochs,
        )
        if batch is not None and not 1 <= batch <= 64:
            raise UsageError(f"--batch-size {batch}: must be between 1 and 64")
        if rate is not None and not 0 < rate < 1:
            raise UsageError(f"--learning-rate {rate:g}: must be above 0 and below 1")
        if epochs is not None and not 1 <= epochs <= 100:
            raise UsageError(f"--epochs {epochs}: must be between 1 and 100")

    def as_strings(self) -> dict[str, str]:
        """The hyperparameters as the service takes them: strings, only those given."""
        return {key: str(value) for key, value in vars(self).items() if value is not None}


def serverless_job(
    model: Model,
    region: str,
    train_data: str,
    validation_data: str | None,
    hyperparameters: ServerlessHyperparameters,
    output_model_name: str,
    model_version: int | None = None,
) -> Any:
    """azure-ai-ml's fine-tuning-as-a-service job; validation None means an automatic split."""
    if region not in model.serverless_regions:
        raise UsageError(
            f"serverless fine-tuning of {model.registry_name} is offered in {', '.join(model.serverless_regions) or 'no region'}, "
            f"not in the stack's region {region}; use --method catalog or custom, or a stack in "
            f"{model.serverless_regions[0] if model.serverless_regions else 'a supported region'}"
        )
    from azure.ai.ml.finetuning import FineTuningTaskType, create_finetuning_job

    job = create_finetuning_job(
        model=registry_id(model, model_version),
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


OUTPUT_MODEL_NAME = option(
    "--output-model-name",
    default="phi-finetuned",
    help="name of the output model (default: %(default)s)",
)
AUTO_SPLIT = option(
    "--auto-split", action="store_true", help="let the service split validation data off"
)
OFFER = Offer(
    "serverless",
    lambda model: bool(model.serverless_regions),
    "not offered for serverless fine-tuning",
)


def hyperparameters(request: Request) -> ServerlessHyperparameters:
    return ServerlessHyperparameters(
        per_device_train_batch_size=request.value(BATCH_SIZE),
        learning_rate=request.value(LEARNING_RATE),
        num_train_epochs=request.value(EPOCHS),
    )


def check(request: Request) -> None:
    hyperparameters(request).check()
    check_model_version(request)


def plan(request: Request, outputs: StackOutputs) -> PlannedJob:
    outputs.require("foundryProjectName")
    data = references(request.train_file, request.eval_file)
    job = serverless_job(
        OFFER.model(request.model),
        outputs.require("location")["location"],
        data["train_data"],
        None if request.value(AUTO_SPLIT) else data["eval_data"],
        hyperparameters(request),
        request.value(OUTPUT_MODEL_NAME),
        request.value(MODEL_VERSION),
    )
    note = "" if request.value(MODEL_VERSION) else unpinned_note(OFFER.model(request.model))
    return PlannedJob(job, note + to_yaml(job))


def preflight(site: Site) -> list[Finding]:
    model = MODELS[DEFAULT_CATALOG_MODEL]
    if not site.foundry:
        return [
            Finding(
                None,
                "serverless: the stack has no Foundry project",
                "pulumi config set foundry true, for --method serverless",
            )
        ]
    if site.location in model.serverless_regions:
        return [Finding(True, f"serverless: {model.registry_name} in {site.location}")]
    return [
        Finding(
            False,
            f"serverless: {model.registry_name} is not offered in {site.location}",
            f"a stack in one of {', '.join(model.serverless_regions)}, or --method catalog",
        )
    ]


METHOD = FinetuneMethod(
    name="serverless",
    help="fine-tuning as a service in the Foundry project",
    options=(EPOCHS, BATCH_SIZE, LEARNING_RATE, MODEL_VERSION, OUTPUT_MODEL_NAME, AUTO_SPLIT),
    check=check,
    plan=plan,
    workspace_output="foundryProjectName",
    default_model=DEFAULT_CATALOG_MODEL,
    offer=OFFER,
    preflight=preflight,
    trainer_refusal="fine-tunes Phi as a chat-completion task, supervised on chat data only; "
    f"{MANAGED_DPO}",
)
