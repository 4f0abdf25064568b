"""`phi deploy --serverless`: a serverless (pay-as-you-go) endpoint for the model that
`phi finetune submit --method serverless` fine-tuned, in the stack's Foundry project.

The CLI creates it, not Pulumi: the model it serves exists only once the fine-tuning job
has finished, long after `pulumi up`. Serverless endpoints speak chat-completions
(`/v1/chat/completions`), which `phi chat --api chat-completions` and the flow
(connection config `api: chat-completions`) speak too. Cleanup deletes the endpoint
first, then archives the model: a model still behind an endpoint cannot go.

A serverless deployment of a fine-tuned model bills an hourly hosting fee for as long as it
exists, even when idle (`azure_facts.SERVERLESS_HOSTING_FEE`): `phi deploy --serverless`
says so before it creates one, and `--delete` ends it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from finetune_phi.cloud.deploy.managed import MODEL_NAME
from finetune_phi.core.azure_facts import SERVERLESS_HOSTING_FEE
from finetune_phi.core.errors import UsageError
from finetune_phi.core.naming import RULES

LATEST = "<latest version at deploy time>"
LATEST_AT_DELETE = "<latest version at delete time>"


@dataclass(frozen=True)
class ServerlessRequest:
    endpoint_name: str
    model_name: str = MODEL_NAME
    model_version: int | None = None
    """None: the model's latest version, read when the endpoint is created."""

    def check(self) -> None:
        broken = RULES["endpointName"].violation(self.endpoint_name)
        if broken:
            raise UsageError(f"--endpoint-name {self.endpoint_name!r}: {broken}")
        if self.model_version is not None and self.model_version < 1:
            raise UsageError(f"--model-version {self.model_version}: must be 1 or more")


def hosting_fee_notice(request: ServerlessRequest) -> str:
    """The one line `phi deploy --serverless` prints on stderr before it creates an endpoint."""
    return (
        f"phi: note: {SERVERLESS_HOSTING_FEE}; delete it when done: "
        f"phi deploy --serverless --delete --endpoint-name {request.endpoint_name}"
    )


def model_id(location: str, workspace_id: str, name: str, version: str) -> str:
    """A fine-tuned model as a serverless endpoint names it: by the region and the workspace
    GUID of the project it was registered in (azure-ai-ml's serverless sample)."""
    return (
        f"azureml://locations/{location}/workspaces/{workspace_id}/models/{name}/versions/{version}"
    )


def spec(name: str, model: str) -> dict[str, str]:
    """The endpoint as azure-ai-ml's `load_serverless_endpoint` reads it."""
    return {"name": name, "model_id": model, "auth_mode": "key"}


def plan_yaml(request: ServerlessRequest, location: str, workspace_id: str) -> str:
    """The dry run: the endpoint as it will be sent; without --model-version, the version is
    the latest one when `phi deploy --serverless` runs."""
    version = str(request.model_version) if request.model_version else LATEST
    model = model_id(location, workspace_id, request.model_name, version)
    return yaml.safe_dump(spec(request.endpoint_name, model), sort_keys=False)


def delete_plan_yaml(request: ServerlessRequest, project: str) -> str:
    """The dry run of --delete: what `delete` sends, in its order."""
    version = str(request.model_version) if request.model_version else LATEST_AT_DELETE
    steps = [
        {"delete": "serverless endpoint", "name": request.endpoint_name, "project": project},
        {"archive": "model", "name": request.model_name, "version": version},
    ]
    return yaml.safe_dump(steps, sort_keys=False)


def chat_url(scoring_uri: str) -> str:
    uri = scoring_uri.rstrip("/")
    return uri if uri.endswith("/chat/completions") else f"{uri}/v1/chat/completions"


def deploy(
    ml_client: Any,
    request: ServerlessRequest,
    location: str,
    workspace_id: str,
    log: Callable[[str], None] = print,
) -> str:
    """Create (or update) the endpoint on the requested (or latest) version; its chat URL."""
    from azure.ai.ml.entities import ServerlessEndpoint

    version = (
        request.model_version
        or ml_client.models.get(name=request.model_name, label="latest").version
    )
    model = model_id(location, workspace_id, request.model_name, str(version))
    log(f"serving {request.model_name}:{version} from {request.endpoint_name}")
    endpoint = ServerlessEndpoint(name=request.endpoint_name, model_id=model, auth_mode="key")
    created = ml_client.serverless_endpoints.begin_create_or_update(endpoint).result()
    return chat_url(created.scoring_uri)


def delete(ml_client: Any, request: ServerlessRequest, log: Callable[[str], None] = print) -> None:
    """The endpoint first, then the model version it served (--model-version, or the
    latest)."""
    version = (
        str(request.model_version)
        if request.model_version
        else ml_client.models.get(name=request.model_name, label="latest").version
    )
    ml_client.serverless_endpoints.begin_delete(request.endpoint_name).result()
    log(f"deleted serverless endpoint {request.endpoint_name}")
    ml_client.models.archive(name=request.model_name, version=version)
    log(f"archived model {request.model_name}:{version}")


def target(ml_client: Any, endpoint_name: str) -> tuple[str, str]:
    """(chat URL, key) of a serverless endpoint, asked of the service now."""
    endpoint = ml_client.serverless_endpoints.get(endpoint_name)
    key = ml_client.serverless_endpoints.get_keys(endpoint_name).primary_key
    return chat_url(endpoint.scoring_uri), str(key)
