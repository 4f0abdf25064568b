"""`phi chat`: one question to the stack's endpoint (key fetched at run time) or a local server."""

from __future__ import annotations

from typing import Any

from flow.endpoint_client import EndpointClient
from jobs.stack_outputs import StackOutputs


def local_client(url: str) -> EndpointClient:
    """A `phi serve` server: no key; `http://127.0.0.1:5001` or its `/score` URL."""
    url = url.rstrip("/")
    return EndpointClient(url if url.endswith("/score") else f"{url}/score")


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


def stack_client(outputs: StackOutputs) -> EndpointClient:
    uri = outputs.require("scoringUri")["scoringUri"]
    return EndpointClient(uri, key=fetch_key(outputs))


def ask(
    client: EndpointClient, question: str, system: str | None, parameters: dict[str, Any]
) -> str:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    return client.chat(messages, {k: v for k, v in parameters.items() if v is not None})
