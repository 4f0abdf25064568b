"""Clients of the stack's endpoints, with their keys asked of Azure ML when the command runs:
never stored, printed or exported.

Each client speaks what its endpoint speaks: the serverless endpoint chat-completions, the
managed one the contract of the engine its live deployment runs (as `phi deploy` recorded
it). Which endpoint is the command's choice (`--managed`, `--serverless`)."""

from __future__ import annotations

from finetune_phi.cloud.deploy import managed, serverless
from finetune_phi.core import state
from finetune_phi.core.errors import UsageError
from finetune_phi.core.stack_outputs import StackOutputs
from finetune_phi.endpoint_client import EndpointClient
from finetune_phi.serving.engine import Engine

SERVERLESS_API = "chat-completions"


def fetch_key(outputs: StackOutputs) -> str:
    """The managed endpoint's primary key, asked of Azure ML now."""
    endpoint = outputs.require("endpointName")["endpointName"]
    return str(outputs.workspace().client().online_endpoints.get_keys(endpoint).primary_key)


def managed_engine(outputs: StackOutputs) -> Engine:
    """The engine the managed endpoint's live deployment runs."""
    endpoint = outputs.require("endpointName")["endpointName"]
    return managed.live_engine(outputs.workspace().state_key, endpoint)


def managed_client(
    outputs: StackOutputs, api: str, deployment: str | None = None
) -> EndpointClient:
    """The stack's managed online endpoint, speaking `api` to its scoring URI; to one of its
    deployments alone when `deployment` is named."""
    uri = outputs.require("scoringUri")["scoringUri"]
    return EndpointClient(uri, key=fetch_key(outputs), api=api, deployment=deployment)


def serverless_client(outputs: StackOutputs) -> EndpointClient:
    """The serverless endpoint `phi deploy --serverless` made in the stack's Foundry project."""
    project = outputs.workspace("foundryProjectName")
    name = state.recall(project.state_key, state.SERVERLESS_ENDPOINT)
    if name is None:
        raise UsageError(
            "no serverless endpoint recorded for this stack: run `phi deploy --serverless`"
        )
    url, key = serverless.target(project.client(), name)
    return EndpointClient(url, key=key, api=SERVERLESS_API)


def stack_client(
    outputs: StackOutputs, *, kind: str | None = None, api: str | None = None
) -> EndpointClient:
    """The stack's endpoint of `kind` (managed or serverless), speaking its own contract or
    `api`: for the managed one, `api` overrides the recorded engine's (a deployment made from
    another folder). Without `kind`, the managed endpoint, unless `api` is a contract its engine
    does not speak and the serverless endpoint does (`--api chat-completions`, as before
    engines)."""
    if kind == "managed":
        return managed_client(outputs, api or managed_engine(outputs).apis[0])
    if kind is None:
        engine = managed_engine(outputs)
        if api is None or api in engine.apis:
            return managed_client(outputs, api or engine.apis[0])
        if api != SERVERLESS_API:
            raise UsageError(
                f"--api {api}: the managed endpoint's engine {engine.name} speaks "
                f"{', '.join(engine.apis)}, the serverless endpoint {SERVERLESS_API} "
                "(--managed speaks it to the managed endpoint all the same)"
            )
    elif api not in (None, SERVERLESS_API):
        raise UsageError(f"--api {api}: the serverless endpoint speaks {SERVERLESS_API} only")
    return serverless_client(outputs)
