"""`phi chat`: one question to the stack's endpoint (key fetched at run time) or a local server."""

from __future__ import annotations

from typing import Any

from flow.endpoint_client import EndpointClient, history_messages
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
    endpoint = outputs.require("endpointName")["endpointName"]
    return str(outputs.workspace().client().online_endpoints.get_keys(endpoint).primary_key)


def serverless_client(outputs: StackOutputs) -> EndpointClient:
    """The serverless endpoint `phi deploy --serverless` made in the stack's Foundry project."""
    from jobs import serverless, state

    project = outputs.workspace("foundryProjectName")
    name = state.recall(project.state_key, serverless.ENDPOINT_STATE_KEY)
    if name is None:
        raise serverless.ServerlessError(
            "no serverless endpoint recorded for this stack: run `phi deploy --serverless`"
        )
    url, key = serverless.target(project.client(), name)
    return EndpointClient(url, key=key, api="chat-completions")


def stack_client(outputs: StackOutputs) -> EndpointClient:
    uri = outputs.require("scoringUri")["scoringUri"]
    return EndpointClient(uri, key=fetch_key(outputs))


def ask(
    client: EndpointClient, question: str, system: str | None, parameters: dict[str, Any]
) -> str:
    messages = history_messages(None, question, system or "")
    return client.chat(messages, {k: v for k, v in parameters.items() if v is not None})
