"""`phi deploy --serverless`: a serverless (pay-as-you-go) endpoint for the model that
`phi finetune submit --method serverless` fine-tuned, in the stack's Foundry project.

The CLI creates it, not Pulumi: the model it serves exists only once the fine-tuning job
has finished, long after `pulumi up`. Serverless endpoints speak chat-completions
(`/v1/chat/completions`), which `phi chat --api chat-completions` and the flow
(connection config `api: chat-completions`) speak too. Cleanup deletes the endpoint
first, then archives the model: a model still behind an endpoint cannot go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from infra.naming import RULES
from jobs.cloud.deploy.managed import MODEL_NAME
from jobs.errors import UsageError


@dataclass(frozen=True)
class ServerlessRequest:
    endpoint_name: str
    model_name: str = MODEL_NAME

    def check(self) -> None:
        broken = RULES["endpointName"].violation(self.endpoint_name)
        if broken:
            raise UsageError(f"--endpoint-name {self.endpoint_name!r}: {broken}")


def spec(name: str, model_id: str) -> dict[str, str]:
    """The endpoint as azure-ai-ml's `load_serverless_endpoint` reads it."""
    return {"name": name, "model_id": model_id, "auth_mode": "key"}


def plan_yaml(request: ServerlessRequest) -> str:
    """The dry run: the endpoint, with the model resolved at deploy time to its latest version."""
    return yaml.safe_dump(
        spec(request.endpoint_name, f"azureml:{request.model_name}@latest"), sort_keys=False
    )


def chat_url(scoring_uri: str) -> str:
    uri = scoring_uri.rstrip("/")
    return uri if uri.endswith("/chat/completions") else f"{uri}/v1/chat/completions"


def deploy(ml_client: Any, request: ServerlessRequest, log: Callable[[str], None] = print) -> str:
    """Create (or update) the endpoint on the model's latest version; its chat URL."""
    from azure.ai.ml.entities import ServerlessEndpoint

    model = ml_client.models.get(name=request.model_name, label="latest")
    log(f"serving {model.name}:{model.version} from {request.endpoint_name}")
    endpoint = ServerlessEndpoint(name=request.endpoint_name, model_id=model.id, auth_mode="key")
    created = ml_client.serverless_endpoints.begin_create_or_update(endpoint).result()
    return chat_url(created.scoring_uri)


def delete(ml_client: Any, request: ServerlessRequest, log: Callable[[str], None] = print) -> None:
    """The endpoint first, then the model version it served."""
    model = ml_client.models.get(name=request.model_name, label="latest")
    ml_client.serverless_endpoints.begin_delete(request.endpoint_name).result()
    log(f"deleted serverless endpoint {request.endpoint_name}")
    ml_client.models.archive(name=model.name, version=model.version)
    log(f"archived model {model.name}:{model.version}")


def target(ml_client: Any, endpoint_name: str) -> tuple[str, str]:
    """(chat URL, key) of a serverless endpoint, asked of the service now."""
    endpoint = ml_client.serverless_endpoints.get(endpoint_name)
    key = ml_client.serverless_endpoints.get_keys(endpoint_name).primary_key
    return chat_url(endpoint.scoring_uri), str(key)
