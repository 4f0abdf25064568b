"""The serverless path: fine-tuning as a service (pay-as-you-go) in a hub-based Foundry
project, with azure-ai-ml's fine-tuning job. The service runs its own recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.cloud.finetune.models import CatalogModel, registry_id
from jobs.errors import UsageError


@dataclass(frozen=True)
class ServerlessHyperparameters:
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None
    n_epochs: int | None = None

    def check(self) -> None:
        if self.batch_size is not None and not 1 <= self.batch_size <= 64:
            raise UsageError(f"--batch-size {self.batch_size}: must be between 1 and 64")
        if (
            self.learning_rate_multiplier is not None
            and not 0 < self.learning_rate_multiplier <= 10
        ):
            raise UsageError(
                f"--learning-rate-multiplier {self.learning_rate_multiplier:g}: must be above 0 and at most 10 "
                "(0.02-0.2 is the documented range to start from)"
            )
        if self.n_epochs is not None and not 1 <= self.n_epochs <= 100:
            raise UsageError(f"--epochs {self.n_epochs}: must be between 1 and 100")

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
        raise UsageError(
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
