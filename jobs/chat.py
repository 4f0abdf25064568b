"""`phi chat`: one question to the stack's endpoint (key fetched at run time) or a local server."""

from __future__ import annotations

from typing import Any

from flow.endpoint_client import EndpointClient
from jobs.stack_outputs import StackOutputs


def local_client(url: str, api: str = "score") -> EndpointClient:
    """A local server with no key: `phi serve` (`http://127.0.0.1:5001` or its `/score`
    URL), or with api chat-completions, the full `/chat/completions` URL."""
    url = url.rstrip("/")
    if api == "score" and not url.endswith("/score"):
        url = f"{url}/score"
    return EndpointClient(url, api=api)


def fetch_key(outputs: StackOutputs) -> str:
    """The endpoint's primary key, asked of Azure ML now; never stored or printed."""
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    found = outputs.require("subscriptionId", "resourceGroupName", "workspaceName", "endpointName")
    client = MLClient(
        DefaultAzureCredential(),
        found["subscriptionId"],
        found["resourceGroupName"],
        found["workspaceName"],
    )
    return str(client.online_endpoints.get_keys(found["endpointName"]).primary_key)


def serverless_client(outputs: StackOutputs) -> EndpointClient:
    """The serverless endpoint `phi deploy --serverless` made in the stack's Foundry project."""
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    from jobs import serverless, state

    found = outputs.require("subscriptionId", "resourceGroupName", "foundryProjectName")
    name = state.recall("/".join(found.values()), serverless.ENDPOINT_STATE_KEY)
    if name is None:
        raise serverless.ServerlessError(
            "no serverless endpoint recorded for this stack: run `phi deploy --serverless`"
        )
    url, key = serverless.target(MLClient(DefaultAzureCredential(), *found.values()), name)
    return EndpointClient(url, key=key, api="chat-completions")


def stack_client(outputs: StackOutputs) -> EndpointClient:
    uri = outputs.require("scoringUri")["scoringUri"]
    return EndpointClient(uri, key=fetch_key(outputs))


def ask(
    client: EndpointClient, question: str, system: str | None, parameters: dict[str, Any]
) -> str:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    return client.chat(messages, {k: v for k, v in parameters.items() if v is not None})
