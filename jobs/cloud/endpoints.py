"""Clients of the stack's endpoints, with their keys asked of Azure ML when the command runs:
never stored, printed or exported."""

from __future__ import annotations

from flow.endpoint_client import EndpointClient
from jobs import state
from jobs.cloud.deploy import serverless
from jobs.errors import UsageError
from jobs.stack_outputs import StackOutputs


def fetch_key(outputs: StackOutputs) -> str:
    """The managed endpoint's primary key, asked of Azure ML now."""
    endpoint = outputs.require("endpointName")["endpointName"]
    return str(outputs.workspace().client().online_endpoints.get_keys(endpoint).primary_key)


def managed_client(outputs: StackOutputs) -> EndpointClient:
    """The stack's managed online endpoint (the scoring contract)."""
    uri = outputs.require("scoringUri")["scoringUri"]
    return EndpointClient(uri, key=fetch_key(outputs))


def serverless_client(outputs: StackOutputs) -> EndpointClient:
    """The serverless endpoint `phi deploy --serverless` made in the stack's Foundry project."""
    project = outputs.workspace("foundryProjectName")
    name = state.recall(project.state_key, state.SERVERLESS_ENDPOINT)
    if name is None:
        raise UsageError(
            "no serverless endpoint recorded for this stack: run `phi deploy --serverless`"
        )
    url, key = serverless.target(project.client(), name)
    return EndpointClient(url, key=key, api="chat-completions")


def stack_client(outputs: StackOutputs, api: str) -> EndpointClient:
    """The stack's endpoint that speaks `api`: the managed one for the scoring contract, the
    serverless one for chat-completions."""
    return serverless_client(outputs) if api == "chat-completions" else managed_client(outputs)
