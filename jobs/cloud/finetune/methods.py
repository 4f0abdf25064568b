"""`phi finetune submit`: one request, three methods. Which options each method takes, the
job it builds, the workspace it runs in, and the submission they share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from infra.azure_facts import DEFAULT_CATALOG_MODEL
from jobs.cloud.finetune import catalog, custom, serverless
from jobs.cloud.finetune.data_assets import data_assets, reference, upload_missing
from jobs.cloud.finetune.models import catalog_model
from jobs.cloud.specs import to_yaml
from jobs.errors import UsageError
from jobs.stack_outputs import StackOutputs

METHODS = ("custom", "catalog", "serverless")
CATALOG_ONLY = ("lr_scheduler", "lora", "deepspeed")
SERVERLESS_ONLY = ("auto_split",)
# Options a method would silently ignore; refused instead.
NOT_FOR = {
    "custom": (*CATALOG_ONLY, *SERVERLESS_ONLY, "epochs", "batch_size", "learning_rate"),
    "catalog": (*SERVERLESS_ONLY, "fsdp"),
    "serverless": (*CATALOG_ONLY, "fsdp"),
}


@dataclass(frozen=True)
class SubmitOptions:
    """Everything `phi finetune submit` was asked for; field names are its options'."""

    train_file: Path
    test_file: Path
    method: str = "custom"
    model: str | None = None
    """Default: the tutorial's Hugging Face model for custom, the table's catalog default
    for catalog and serverless."""
    experiment: str = custom.EXPERIMENT
    # custom
    profile: str = "gpu"
    nodes: int = 1
    gpus_per_node: int = 1
    fsdp: bool = False
    trl_args: tuple[str, ...] = ()
    phi_options: tuple[str, ...] = ()
    """The command's own options (for naming the closest to a misspelt one)."""
    # catalog and serverless
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    # catalog
    lr_scheduler: str | None = None
    lora: bool | None = None
    deepspeed: bool | None = None
    # serverless
    output_model_name: str = "phi-finetuned"
    auto_split: bool = False

    @classmethod
    def from_namespace(cls, values: Any, phi_options: Sequence[str] = ()) -> SubmitOptions:
        given = {f.name: getattr(values, f.name) for f in fields(cls) if f.name != "phi_options"}
        return cls(**given, phi_options=tuple(phi_options))

    def custom_request(self) -> custom.FinetuneRequest:
        return custom.FinetuneRequest(
            train_file=self.train_file,
            test_file=self.test_file,
            profile=self.profile,
            nodes=self.nodes,
            gpus_per_node=self.gpus_per_node,
            fsdp=self.fsdp,
            model=self.model or custom.DEFAULT_MODEL,
            experiment=self.experiment,
            trl_args=self.trl_args,
            phi_options=self.phi_options,
        )

    def check(self) -> None:
        """Refuse options the chosen method would silently ignore, then the request's rules."""
        if self.method not in METHODS:
            raise UsageError(f"--method {self.method!r}: must be one of {', '.join(METHODS)}")
        given = [name for name in NOT_FOR[self.method] if getattr(self, name) not in (None, False)]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UsageError(f"{flags}: not an option of --method {self.method}")
        if self.method != "custom" and (
            self.trl_args or self.profile != "gpu" or (self.nodes, self.gpus_per_node) != (1, 1)
        ):
            raise UsageError(
                f"--method {self.method} runs the service's own recipe: TRL arguments, --profile, --nodes and "
                "--gpus-per-node belong to --method custom"
            )
        self.custom_request().check()


@dataclass(frozen=True)
class PlannedJob:
    job: Any
    """azure-ai-ml's job entity, ready to send."""
    spec: str
    """Its YAML: what the dry run prints."""
    workspace_output: str
    """The stack output naming the workspace it runs in."""


def plan(options: SubmitOptions, outputs: StackOutputs) -> PlannedJob:
    """The job for the chosen method, checked, built and rendered; nothing is sent."""
    options.check()
    if options.method == "custom":
        request = options.custom_request()
        compute_key = custom.PROFILES[request.profile].compute_output
        job = custom.build_job(request, outputs.require(compute_key)[compute_key])
        return PlannedJob(job, to_yaml(job), "workspaceName")
    model = catalog_model(options.model or DEFAULT_CATALOG_MODEL, options.method)
    assets = {
        name: reference(asset)
        for name, asset in data_assets(options.train_file, options.test_file).items()
    }
    if options.method == "catalog":
        given: dict[str, Any] = {
            "learning_rate": options.learning_rate,
            "lr_scheduler_type": options.lr_scheduler,
            "num_train_epochs": options.epochs,
            "per_device_train_batch_size": options.batch_size,
            "apply_lora": options.lora,
            "apply_deepspeed": options.deepspeed,
        }
        hyperparameters = replace(
            catalog.CatalogHyperparameters(),
            **{key: value for key, value in given.items() if value is not None},
        )
        hyperparameters.check()
        spec = catalog.catalog_pipeline(
            model, outputs.require("gpuComputeName")["gpuComputeName"], assets["train_data"],
            assets["test_data"], hyperparameters, options.experiment,
        )  # fmt: skip
        return PlannedJob(
            catalog.load_pipeline(spec), yaml.safe_dump(spec, sort_keys=False), "workspaceName"
        )
    outputs.require("foundryProjectName")
    tuning = serverless.ServerlessHyperparameters(
        per_device_train_batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        num_train_epochs=options.epochs,
    )
    tuning.check()
    job = serverless.serverless_job(
        model, outputs.require("location")["location"], assets["train_data"],
        None if options.auto_split else assets["test_data"], tuning, options.output_model_name,
    )  # fmt: skip
    return PlannedJob(job, to_yaml(job), "foundryProjectName")


def submit(
    ml_client: Any, options: SubmitOptions, job: Any, log: Callable[[str], None] = print
) -> Any:
    """Upload the data assets the workspace lacks, submit the job, return it as created."""
    upload_missing(ml_client, data_assets(options.train_file, options.test_file), log)
    return ml_client.jobs.create_or_update(job)
