"""`phi finetune submit`: the fine-tune as an Azure ML command job on the stack's cluster.

The job runs `jobs/train/src/train.py` with `hyperparameters.yaml` in an environment built
from a pinned base image plus `jobs/train/environment/requirements.txt`, the same pins the
tests train with (`make lock` writes both). Training and test data become data assets
versioned by their content hash, so a re-submit of the same files uploads nothing. The
model is the job's named output `model`, an MLflow model that `phi deploy` registers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRAIN_SOURCE = Path(__file__).resolve().parent / "train" / "src"
REQUIREMENTS = Path(__file__).resolve().parent / "train" / "environment" / "requirements.txt"
# Azure ML's Ubuntu 22.04 base image with conda and OpenMPI; torch brings its own CUDA
# libraries from the requirements, so the image supplies the OS, conda and MPI only.
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:20240712.v1"
PYTHON_VERSION = "3.11"
MODEL_OUTPUT = "model"
EXPERIMENT = "finetune-phi"
DEFAULT_MODEL = "microsoft/Phi-3.5-mini-instruct"
LAST_JOB_KEY = "last_finetune_job"


class SubmitError(ValueError):
    """A bad argument, found before anything is uploaded or submitted."""


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
    test_file: Path
    profile: str = "gpu"
    nodes: int = 1
    gpus_per_node: int = 1
    model: str = DEFAULT_MODEL
    experiment: str = EXPERIMENT
    trl_args: tuple[str, ...] = ()

    def check(self) -> None:
        """Every rule, each naming its argument, before anything is sent."""
        for flag, path in (("--train-file", self.train_file), ("--test-file", self.test_file)):
            if not path.is_file():
                raise SubmitError(
                    f"{flag} {path}: no such file (make it with `phi data prepare --out DIR`)"
                )
        if self.profile not in PROFILES:
            raise SubmitError(f"--profile {self.profile!r}: must be one of {', '.join(PROFILES)}")
        if not 1 <= self.nodes <= 100:
            raise SubmitError(f"--nodes {self.nodes}: must be between 1 and 100")
        if not 1 <= self.gpus_per_node <= 16:
            raise SubmitError(f"--gpus-per-node {self.gpus_per_node}: must be between 1 and 16")
        if self.profile == "cpu" and (self.nodes, self.gpus_per_node) != (1, 1):
            raise SubmitError(
                "--profile cpu runs one process on one node: drop --nodes/--gpus-per-node"
            )
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,255}", self.experiment):
            raise SubmitError(f"--experiment {self.experiment!r}: letters, digits, '_', '-', '.'")
        check_trl_args(self.trl_args)


def check_trl_args(args: tuple[str, ...]) -> None:
    """TRL overrides are `--name value` pairs (or `--name=value`) in TRL's own spelling."""
    names = [a.removeprefix("--").split("=")[0] for a in args if a.startswith("--")]
    if args and not args[0].startswith("--"):
        raise SubmitError(
            f"unexpected argument {args[0]!r}; TRL overrides look like --learning_rate 3e-3"
        )
    reserved = {
        "train_file",
        "eval_file",
        "model_output",
        "config",
        "output_dir",
        "model_name_or_path",
    }
    for name in names:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise SubmitError(
                f"--{name}: TRL arguments are spelt in snake_case, e.g. --num_train_epochs"
            )
        if name in reserved:
            raise SubmitError(f"--{name} is set by phi itself; use the phi option instead")


def content_version(path: Path) -> str:
    """A data asset version that changes exactly when the file's content does."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def data_assets(request: FinetuneRequest) -> dict[str, Any]:
    """The training and test data as versioned uri_file data assets, keyed by job input."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Data

    return {
        input_name: Data(
            name=f"phi-chat-{kind}",
            version=content_version(path),
            path=str(path),
            type=AssetTypes.URI_FILE,
            description=f"Chat {kind} data for finetune-phi ({path.name}).",
        )
        for input_name, kind, path in (
            ("train_data", "train", request.train_file),
            ("test_data", "test", request.test_file),
        )
    }


def conda_environment(
    requirements: Path = REQUIREMENTS, name: str = "finetune-phi-train"
) -> dict[str, Any]:
    """A conda file: the Python version of the locks and exactly the pins of `requirements`."""
    pins = [
        line.strip()
        for line in requirements.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {
        "name": name,
        "channels": ["conda-forge"],
        "dependencies": [f"python={PYTHON_VERSION}", "pip", {"pip": pins}],
    }


def build_job(request: FinetuneRequest, compute: str) -> Any:
    """The command job, built with azure-ai-ml's own classes; needs no credentials."""
    from azure.ai.ml import Input, Output, PyTorchDistribution, command
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Environment

    profile = PROFILES[request.profile]
    assets = data_assets(request)
    trl_args = " ".join((*profile.trl_defaults, *request.trl_args))
    distributed = request.nodes * request.gpus_per_node > 1
    node = command(
        code=str(TRAIN_SOURCE),
        command=(
            "python train.py --config hyperparameters.yaml"
            f" --model_name_or_path {request.model}"
            " --train_file ${{inputs.train_data}} --eval_file ${{inputs.test_data}}"
            f" --model_output ${{{{outputs.{MODEL_OUTPUT}}}}} --output_dir outputs/checkpoints"
            + (f" {trl_args}" if trl_args else "")
        ),
        inputs={
            name: Input(type=AssetTypes.URI_FILE, path=f"azureml:{asset.name}:{asset.version}")
            for name, asset in assets.items()
        },
        outputs={MODEL_OUTPUT: Output(type=AssetTypes.MLFLOW_MODEL)},
        environment=Environment(image=BASE_IMAGE, conda_file=conda_environment()),
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
        display_name=f"sft {request.model.split('/')[-1]} ({request.profile})",
        experiment_name=request.experiment,
        description=f"TRL SFT of {request.model} on the prepared chat data; MLflow model in outputs.{MODEL_OUTPUT}.",
        tags={"project": "finetune-phi", "profile": request.profile},
    )
    return node._to_job()


def submit(ml_client: Any, request: FinetuneRequest, job: Any, log: Any = print) -> Any:
    """Upload the data assets that do not exist yet, submit the job, return it as created."""
    from azure.core.exceptions import ResourceNotFoundError

    for asset in data_assets(request).values():
        try:
            ml_client.data.get(name=asset.name, version=asset.version)
            log(f"data asset {asset.name}:{asset.version} exists; not uploading again")
        except ResourceNotFoundError:
            ml_client.data.create_or_update(asset)
            log(f"uploaded data asset {asset.name}:{asset.version}")
    return ml_client.jobs.create_or_update(job)
