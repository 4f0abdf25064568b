"""The models a method fine-tunes from Azure's registry, looked up in the table of Azure facts
(`src/finetune_phi/core/azure_facts.py`): offered, not retired, and in the stack's region."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from finetune_phi.core.azure_facts import MODELS, Model, retirement_problem
from finetune_phi.core.errors import UsageError

REGISTRY = "azureml"


@dataclass(frozen=True)
class Offer:
    """Which models of the facts table one method fine-tunes."""

    method: str
    fine_tunes: Callable[[Model], bool]
    refusal: str
    """Why a known model that it does not fine-tune is refused, e.g. "not offered for
    serverless fine-tuning"."""

    def offers(self, model: Model, today: date | None = None) -> bool:
        return (
            self.fine_tunes(model)
            and retirement_problem("model", model.registry_name, today) is None
        )

    def offered(self, today: date | None = None) -> list[str]:
        """Registry names the method can fine-tune today."""
        return [name for name, model in MODELS.items() if self.offers(model, today)]

    def model(self, requested: str, today: date | None = None) -> Model:
        """The registry model for `--model` (`microsoft/Phi-4-mini-instruct` or its asset
        name), refused before anything is sent when the method cannot fine-tune it today."""
        name = requested.removeprefix("microsoft/")
        model = next((m for m in MODELS.values() if name.lower() == m.registry_name.lower()), None)
        choices = ", ".join(self.offered(today))
        if model is None:
            raise UsageError(
                f"--model {requested!r} is not a catalog model this tool knows; choose one of {choices}"
            )
        retired = retirement_problem("model", model.registry_name, today)
        if retired is not None:
            raise UsageError(f"--model {requested!r}: {retired} (for --method {self.method})")
        if not self.fine_tunes(model):
            raise UsageError(f"--model {requested!r}: {self.refusal}; choose one of {choices}")
        return model


def registry_id(model: Model, version: int | None = None) -> str:
    """The model's asset id: at `version`, or at the `latest` label (for a dry run to show)."""
    where = f"versions/{version}" if version else "labels/latest"
    return f"azureml://registries/{REGISTRY}/models/{model.registry_name}/{where}"


def latest_version(registry_models: Any, model: Model) -> int:
    """The version the registry's `latest` label names now, read through azure-ai-ml's
    `ModelOperations.get(name, label=...)` of a registry client. A job must send
    `versions/N`: azure-ai-ml 1.35 does not resolve a label for fine-tuning, and Azure's
    own samples resolve it first (azure-ai-docs foundry-classic/how-to/fine-tune-serverless.md,
    2026-01-28)."""
    return int(registry_models.get(model.registry_name, label="latest").version)


def unpinned_note(model: Model) -> str:
    """What a dry run without --model-version says of the model it would send."""
    return (
        f"# model: {registry_id(model)} is resolved to .../versions/N at submit (one registry "
        "read); --model-version N sends that version\n"
    )
