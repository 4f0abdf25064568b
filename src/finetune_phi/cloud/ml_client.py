"""azure-ai-ml's MLClient on an ArmClient's HTTP session, with the same promises: no
redirect followed, each request (retries included) within ArmClient's timeout, and the
bearer token for Azure Resource Manager's own host alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests

from finetune_phi.core.arm import ARM_ENDPOINT, ArmClient, ArmError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


def on_session(
    credential: TokenCredential,
    arm: ArmClient,
    session: requests.Session,
    subscription_id: str,
    resource_group: str | None = None,
    *,
    poll_seconds: float | None = None,
) -> Any:
    """An MLClient sending through `session` with `arm`'s limits. A request that would leave
    Azure's public Resource Manager (a `nextLink`, a poll URL elsewhere) is refused, as
    ArmError, before the token is added: the SDK has no public way to be pointed elsewhere."""
    from azure.ai.ml import MLClient
    from azure.core.pipeline import PipelineRequest
    from azure.core.pipeline.policies import SansIOHTTPPolicy
    from azure.core.pipeline.transport import RequestsTransport

    class ArmOnly(SansIOHTTPPolicy[Any, Any]):
        def on_request(self, request: PipelineRequest[Any]) -> None:
            url = str(request.http_request.url)
            if not url.startswith(f"{ARM_ENDPOINT}/"):
                where = url.split("?")[0]
                raise ArmError(f"{where} leaves {ARM_ENDPOINT}; not followed")

    limit = arm.request_timeout_seconds
    transport = RequestsTransport(
        session=session, session_owner=False, connection_timeout=limit, read_timeout=limit
    )
    polling: dict[str, Any] = {} if poll_seconds is None else {"polling_interval": poll_seconds}
    return MLClient(
        credential,
        subscription_id,
        resource_group,
        transport=transport,
        permit_redirects=False,
        timeout=limit,
        per_call_policies=[ArmOnly()],
        enable_telemetry=False,
        **polling,
    )


def registry_models(registry: str) -> Any:
    """azure-ai-ml's model operations of an Azure ML registry (`azureml`: the catalog), signed
    in with DefaultAzureCredential as `StackOutputs.workspace(...).client()` is."""
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(DefaultAzureCredential(), registry_name=registry).models
