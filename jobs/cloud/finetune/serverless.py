"""The serverless path: fine-tuning as a service (pay-as-you-go) in a hub-based Foundry
project, with azure-ai-ml's fine-tuning job. The service runs its own recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.azure_facts import Model
from jobs.cloud.finetune.models import registry_id
from jobs.errors import UsageError


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
