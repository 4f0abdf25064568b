"""What a serving engine is: the contracts it speaks, how `phi serve` starts it on an MLflow
model folder, and what a managed online deployment of it needs.

Plain data only, no Azure SDK: `finetune_phi.local.serve` runs the local half and
`finetune_phi.cloud.deploy.managed` turns the managed half into azure-ai-ml entities.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

SERVED_MODEL = "phi"
"""The model's name in the OpenAI API (`model` in requests, `GET /v1/models`), on every
engine, locally and in a managed deployment."""
CHAT_COMPLETIONS_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class LocalServer:
    """The engine on this machine, behind the local front (jobs/score/server.py). It finds
    the model folder in $AZUREML_MODEL_DIR, as it does in a managed deployment."""

    command: Callable[[str, int], list[str]]
    """The command line that serves on (host, port) until it is stopped."""
    environment: Mapping[str, str]
    """Variables it needs beside the caller's own."""
    routes: Mapping[str, str]
    """Each contract it speaks (finetune_phi.endpoint_client.APIS), first the one clients
    speak unless told otherwise, and the path it answers it at."""
    ready_path: str = "/health"
    """GET it answers 200 once the model is loaded."""


@dataclass(frozen=True)
class ScoringCode:
    """Our scoring script on Azure ML's base image: the folder uploaded with the deployment
    and the pins installed into the image."""

    folder: Path
    scoring_script: str
    requirements: Path
    environment_name: str


@dataclass(frozen=True)
class Container:
    """An image that serves by itself: Azure ML sends its probes and requests to these
    routes of `port`. With `build`, Azure ML builds the image from that folder (its
    Dockerfile starts FROM `image`), since a managed deployment cannot pass the container
    arguments."""

    image: str
    port: int
    liveness_path: str
    readiness_path: str
    scoring_path: str
    build: Path | None = None
    dockerfile: str = "Dockerfile"
    """Within `build`."""


INSTANCE_TYPE_VARIABLE = "PHI_INSTANCE_TYPE"
"""Tells the scoring code its VM size, which it names when a conversation is longer than
that GPU holds (jobs/score/score.py reads it)."""


def instance_type_variable(instance_type: str) -> dict[str, str]:
    return {INSTANCE_TYPE_VARIABLE: instance_type}


@dataclass(frozen=True)
class Probes:
    """Azure ML's liveness and readiness probes, after the deployment's initial delay."""

    liveness_period_s: int = 30
    readiness_period_s: int = 10
    timeout_s: int = 10
    failure_threshold: int = 30


@dataclass(frozen=True)
class ManagedDeployment:
    """The engine on a managed online endpoint."""

    runtime: ScoringCode | Container
    environment_variables: Mapping[str, str]
    """Beside the identity's client id and HF_HUB_OFFLINE, which every deployment gets."""
    max_concurrent_requests: int
    """Per instance; Azure ML answers 429 beyond twice this times the instances."""
    probes: Probes
    instance_variables: Callable[[str], Mapping[str, str]] = lambda instance_type: {}
    """Variables that depend on the instance type (its GPU's memory and precision)."""
    needs_gpu: bool = False


@dataclass(frozen=True)
class Engine:
    name: str
    """What `--engine` calls it, and what `phi deploy` records for the endpoint clients."""
    summary: str
    """One line for `--help`."""
    apis: tuple[str, ...]
    """The contracts its managed deployment speaks (finetune_phi.endpoint_client.APIS);
    clients speak the first unless told otherwise."""
    local: LocalServer
    managed: ManagedDeployment
