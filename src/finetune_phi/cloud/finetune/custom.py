"""The custom path: our TRL training script as an Azure ML command job on the stack's cluster.

The job runs `jobs/train/src/train.py` with its trainer's recipe (`hyperparameters.yaml` for
SFT, `hyperparameters-dpo.yaml` for DPO) in the training environment
(`finetune_phi.cloud.environment`). It starts from a hub id, or from an MLflow model in Azure
ML (`--model azureml://jobs/JOB/outputs/model`, an SFT job's, or `azureml:NAME:VERSION`),
which the job mounts as its input `base_model`. Its model is the named output `model`, an
MLflow model that `phi deploy` registers.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import io
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from finetune_phi.cloud.environment import environment, tags
from finetune_phi.cloud.finetune import MODEL_OUTPUT
from finetune_phi.cloud.finetune.data_assets import check_files, data_assets, reference
from finetune_phi.cloud.finetune.method import (
    EXPERIMENT,
    FinetuneMethod,
    PlannedJob,
    Request,
    check_experiment,
    option,
)
from finetune_phi.cloud.finetune.trainers import DEFAULT_TRAINER, TRAINERS, trainer
from finetune_phi.cloud.specs import to_yaml
from finetune_phi.core.errors import UsageError
from finetune_phi.core.folders import (
    TRAIN_FSDP_CONFIG,
    TRAIN_HYPERPARAMETERS,
    TRAIN_REQUIREMENTS,
    TRAIN_SOURCE,
)
from finetune_phi.core.stack_outputs import StackOutputs

BASE_MODEL_INPUT = "base_model"
"""The job input an Azure ML model to start from is mounted as (an MLflow model folder)."""
AZURE_MODEL = re.compile(
    r"azureml://jobs/[A-Za-z0-9_.-]+/outputs/[A-Za-z0-9_]+"
    r"|azureml:[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+|@latest)"
    r"|azureml://registries/[A-Za-z0-9_.-]+/models/[A-Za-z0-9_.-]+/versions/[A-Za-z0-9_.-]+"
)
"""`--model` as an MLflow model in Azure ML: a job's output (an SFT job's `model`), a
workspace model by version (or `@latest`), or a registry model by version."""

DEFAULT_MODEL: str = yaml.safe_load(TRAIN_HYPERPARAMETERS.read_text())["model_name_or_path"]
"""The tutorial's model, as the training script's hyperparameters name it."""
# Arguments phi itself passes to the script; a user sets them through phi's own options.
RESERVED_ARGUMENTS = frozenset(
    {
        "train_file",
        "eval_file",
        "model_output",
        "config",
        "output_dir",
        "model_name_or_path",
        "fsdp",
        "fsdp_config",
    }
)


def fsdp_arguments(config: str) -> tuple[str, ...]:
    """The Trainer's FSDP with the shipped settings at `config` (the job runs in their folder).

    FSDP checkpoints activations itself (`fsdp.json`); the Trainer's own gradient
    checkpointing on top would gather every layer's parameters a second time."""
    return ("--fsdp", "--fsdp_config", config, "--activation_checkpointing", "false")


@dataclass(frozen=True)
class Profile:
    """One of the tutorial's two paths."""

    compute_output: str
    """Stack output naming the cluster."""
    trl_defaults: tuple[str, ...]
    """TRL arguments the path needs; the user's own arguments come after and win."""


PROFILES = {
    "gpu": Profile("gpuComputeName", ()),
    # The tutorial's low-cost path: a CPU node, short sequences, one example per step.
    "cpu": Profile("cpuComputeName", ("--max_length", "512", "--per_device_train_batch_size", "1")),
}


@dataclass(frozen=True)
class FinetuneRequest:
    train_file: Path
    eval_file: Path
    profile: str = "gpu"
    nodes: int = 1
    gpus_per_node: int = 1
    fsdp: bool = False
    """Shard parameters, gradients and optimizer state over every GPU (`fsdp.json`)."""
    model: str = DEFAULT_MODEL
    experiment: str = EXPERIMENT
    trl_args: tuple[str, ...] = ()
    phi_options: tuple[str, ...] = ()
    """The command's own options, to name the closest when a TRL argument is unknown."""
    trainer: str = DEFAULT_TRAINER
    """`--trainer`: SFT on chat data, or DPO on preference pairs."""

    def check(self) -> None:
        """Every rule, each naming its argument, before anything is sent."""
        check_files(self.train_file, self.eval_file, self.trainer)
        if Path(self.model).expanduser().exists():
            raise UsageError(
                f"--model {self.model}: a folder on this machine, which the job on the cluster "
                "cannot read; start from a job's model with --model azureml://jobs/JOB/outputs/"
                "model, or register the folder and give azureml:NAME:VERSION"
            )
        if self.model.startswith("azureml:") and not AZURE_MODEL.fullmatch(self.model):
            raise UsageError(
                f"--model {self.model}: an Azure ML model is azureml://jobs/JOB/outputs/model "
                "(a job's output), azureml:NAME:VERSION or azureml://registries/R/models/NAME/"
                "versions/V"
            )
        if self.profile not in PROFILES:
            raise UsageError(f"--profile {self.profile!r}: must be one of {', '.join(PROFILES)}")
        if not 1 <= self.nodes <= 100:
            raise UsageError(f"--nodes {self.nodes}: must be between 1 and 100")
        if not 1 <= self.gpus_per_node <= 16:
            raise UsageError(f"--gpus-per-node {self.gpus_per_node}: must be between 1 and 16")
        if self.profile == "cpu" and (self.nodes, self.gpus_per_node) != (1, 1):
            raise UsageError(
                "--profile cpu runs one process on one node: drop --nodes/--gpus-per-node"
            )
        if self.fsdp and (self.profile == "cpu" or self.nodes * self.gpus_per_node < 2):
            raise UsageError(
                "--fsdp shards the model over several GPUs: give --gpus-per-node and/or "
                "--nodes for 2 or more in all, on --profile gpu"
            )
        check_experiment(self.experiment)
        check_trl_args(self.trl_args, self.phi_options, fsdp=self.fsdp, trainer=self.trainer)


def check_trl_args(
    args: tuple[str, ...],
    phi_options: Sequence[str] = (),
    *,
    fsdp: bool = False,
    trainer: str = DEFAULT_TRAINER,
) -> None:
    """TRL overrides are `--name value` pairs (or `--name=value`) in TRL's own spelling,
    parsed here with TRL's own parser over the training script's arguments with `trainer`
    (SFTConfig's or DPOConfig's), so an unknown name, another trainer's argument, a bad
    value, a DPO `--beta` outside its range or options the script refuses together are
    refused before a job is built. `phi_options` are the command's own options: a misspelt
    one is named with its closest match."""
    if not args:
        return
    if not args[0].startswith("--"):
        raise UsageError(
            f"unexpected argument {args[0]!r}; TRL overrides look like --learning_rate 3e-3"
        )
    script = training_script()
    names = [a.removeprefix("--").split("=")[0] for a in args if a.startswith("--")]
    for name in names:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise UsageError(
                f"--{name}: TRL arguments are spelt in snake_case, e.g. --num_train_epochs"
            )
        if name in RESERVED_ARGUMENTS:
            raise UsageError(f"--{name} is set by phi itself; use the phi option instead")
        if name in script.REFUSED_ARGUMENTS:
            raise UsageError(f"--{name}: {script.REFUSED_ARGUMENTS[name]}")
    parser = script.make_parser(trainer)
    known = [option for action in parser._actions for option in action.option_strings]
    for name in names:
        if f"--{name}" not in known:
            other = [t for t in TRAINERS if t != trainer and script.takes(t, f"--{name}")]
            if other:
                raise UsageError(
                    f"--{name}: an argument of --trainer {other[0]}, not of --trainer {trainer}"
                )
            match = difflib.get_close_matches(f"--{name}", [*phi_options, *known], n=1, cutoff=0.6)
            hint = f"; did you mean {match[0]}?" if match else ""
            raise UsageError(f"--{name}: neither an option of phi nor a TRL/Trainer argument{hint}")
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            # The values, each by its type; the job checks the hardware they need.
            values, _ = parser.parse_known_args(list(args))
    except SystemExit:
        reason = errors.getvalue().strip().splitlines()[-1:] or ["invalid value"]
        raise UsageError(f"TRL arguments: {reason[0].split('error: ')[-1]}") from None
    problem = script.incompatible_options(values, fsdp=fsdp) or script.trainer_problem(
        values, trainer
    )
    if problem:
        raise UsageError(problem)


def training_script() -> Any:
    """The training script as a module: its TRL parser (`make_parser`) and argument rules,
    exactly as the job will apply them."""
    spec = importlib.util.spec_from_file_location("finetune_phi_train", TRAIN_SOURCE / "train.py")
    assert spec is not None
    assert spec.loader is not None
    script = sys.modules.get(spec.name) or importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script  # its dataclasses resolve their annotations through it
    spec.loader.exec_module(script)
    return script


def model_label(model: str) -> str:
    """The model as a display name says it: the hub name, or the job or model in Azure ML."""
    if model.startswith("azureml://jobs/"):
        return f"job {model.split('/')[3]}'s model"
    return model.removeprefix("azureml:").split("/")[-1]


def build_job(request: FinetuneRequest, compute: str) -> Any:
    """The command job, built with azure-ai-ml's own classes; needs no credentials."""
    from azure.ai.ml import Input, Output, PyTorchDistribution, command
    from azure.ai.ml.constants import AssetTypes

    profile = PROFILES[request.profile]
    chosen = trainer(request.trainer)
    assets = data_assets(request.train_file, request.eval_file, chosen.name)
    sharding = fsdp_arguments(TRAIN_FSDP_CONFIG.name) if request.fsdp else ()
    trl_args = " ".join((*profile.trl_defaults, *sharding, *request.trl_args))
    distributed = request.nodes * request.gpus_per_node > 1
    inputs = {
        name: Input(type=AssetTypes.URI_FILE, path=reference(asset))
        for name, asset in assets.items()
    }
    model = request.model
    if model.startswith("azureml:"):
        inputs[BASE_MODEL_INPUT] = Input(type=AssetTypes.MLFLOW_MODEL, path=model)
        model = f"${{{{inputs.{BASE_MODEL_INPUT}}}}}"
    data = "pairs" if chosen.task == "preference" else "data"
    node = command(
        code=str(TRAIN_SOURCE),
        command=(
            f"python train.py --config {chosen.hyperparameters.name}"
            f" --model_name_or_path {model}"
            " --train_file ${{inputs.train_data}} --eval_file ${{inputs.eval_data}}"
            f" --model_output ${{{{outputs.{MODEL_OUTPUT}}}}} --output_dir outputs/checkpoints"
            f" --trainer {chosen.name}" + (f" {trl_args}" if trl_args else "")
        ),
        inputs=inputs,
        outputs={MODEL_OUTPUT: Output(type=AssetTypes.MLFLOW_MODEL)},
        environment=environment(TRAIN_REQUIREMENTS, "finetune-phi-train"),
        compute=compute,
        instance_count=request.nodes,
        distribution=(
            PyTorchDistribution(process_count_per_instance=request.gpus_per_node)
            if distributed
            else None
        ),
        shm_size="16g",
        environment_variables={
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        },
        display_name=f"{chosen.name} {model_label(request.model)} ({request.profile})",
        experiment_name=request.experiment,
        description=f"TRL {chosen.name.upper()} of {request.model} on the prepared {chosen.task} "
        f"{data}; MLflow model in outputs.{MODEL_OUTPUT}.",
        tags=tags(profile=request.profile, trainer=chosen.name),
    )
    return node._to_job()


PROFILE = option("--profile", choices=sorted(PROFILES), default="gpu", help="default: %(default)s")
NODES = option("--nodes", type=int, default=1, help="nodes (default: 1)")
GPUS_PER_NODE = option(
    "--gpus-per-node", type=int, default=1, help="processes per node, one per GPU (default: 1)"
)
FSDP = option(
    "--fsdp",
    action="store_true",
    help="shard the model over all nodes x GPUs (FSDP2; for Phi-4-class models)",
)


def finetune_request(request: Request) -> FinetuneRequest:
    return FinetuneRequest(
        train_file=request.train_file,
        eval_file=request.eval_file,
        profile=request.value(PROFILE),
        nodes=request.value(NODES),
        gpus_per_node=request.value(GPUS_PER_NODE),
        fsdp=request.value(FSDP),
        model=request.model,
        experiment=request.experiment,
        trl_args=request.extra_args,
        phi_options=request.phi_options,
        trainer=request.trainer,
    )


def check(request: Request) -> None:
    finetune_request(request).check()


def plan(request: Request, outputs: StackOutputs) -> PlannedJob:
    finetune = finetune_request(request)
    compute = PROFILES[finetune.profile].compute_output
    job = build_job(finetune, outputs.require(compute)[compute])
    spec = to_yaml(job)
    return PlannedJob(job, spec if request.verbose else with_the_lock_named(spec))


def with_the_lock_named(spec: str) -> str:
    """The job's YAML with the environment's pip pins (the training lock, most of the YAML)
    named by file, count and sha256 instead of listed; `phi --verbose` lists them."""
    data = yaml.safe_load(spec)
    dependencies = data.get("environment", {}).get("conda_file", {}).get("dependencies", [])
    for index, dependency in enumerate(dependencies):
        if isinstance(dependency, dict) and "pip" in dependency:
            dependencies[index] = {
                "pip": {
                    "lock": str(TRAIN_REQUIREMENTS),
                    "pins": len(dependency["pip"]),
                    "sha256": hashlib.sha256(TRAIN_REQUIREMENTS.read_bytes()).hexdigest(),
                    "listed_by": "phi --verbose finetune submit --dry-run",
                }
            }
    return yaml.safe_dump(data, sort_keys=False)


METHOD = FinetuneMethod(
    name="custom",
    help="our TRL training script as a command job on the stack's cluster",
    options=(PROFILE, NODES, GPUS_PER_NODE, FSDP),
    check=check,
    plan=plan,
    workspace_output="workspaceName",
    default_model=DEFAULT_MODEL,
    extra_arguments="TRL arguments",
    trainers=tuple(TRAINERS),
)
