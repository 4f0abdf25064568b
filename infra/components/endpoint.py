"""The managed online endpoint. Pulumi owns the endpoint; `phi deploy` owns its traffic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import machinelearningservices as ml

from finetune_phi.core.contract import PROJECT
from infra.components.identity import runs_as

# Properties `phi deploy` sets on the live endpoint. A PUT without them resets live traffic
# to 0 %, so Pulumi must never send its own (empty) value: it keeps whatever the refreshed
# state holds (Pulumi.yaml sets `refresh: always`).
DEPLOY_OWNED_PROPERTIES = ("properties.traffic", "properties.mirrorTraffic")


@dataclass(frozen=True)
class InferenceEndpointArgs:
    resource_group_name: pulumi.Input[str]
    """Resource group of the workspace."""
    workspace_name: pulumi.Input[str]
    """Workspace the endpoint belongs to."""
    location: str
    """Azure region; part of the scoring URI."""
    endpoint_name: str
    """Endpoint name, unique in the region."""
    identity_id: pulumi.Input[str]
    """User-assigned identity the deployments run as."""
    tags: Mapping[str, str]
    """Tags for the endpoint."""
    depends_on: Sequence[pulumi.Resource] = ()
    """Role assignments (AcrPull, Blob Reader) a deployment needs to pull image and model."""


class InferenceEndpoint(pulumi.ComponentResource):
    """A key-authenticated managed online endpoint running as the user-assigned identity."""

    name: pulumi.Output[str]
    resource_id: pulumi.Output[str]
    scoring_uri: pulumi.Output[str]

    def __init__(
        self, name: str, args: InferenceEndpointArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(f"{PROJECT}:index:InferenceEndpoint", name, None, opts)
        endpoint = ml.OnlineEndpoint(
            f"{name}-endpoint",
            endpoint_name=args.endpoint_name,
            resource_group_name=args.resource_group_name,
            workspace_name=args.workspace_name,
            location=args.location,
            tags=dict(args.tags),
            identity=runs_as(args.identity_id),
            properties=ml.OnlineEndpointPropertiesArgs(
                auth_mode=ml.EndpointAuthMode.KEY,
                description="Fine-tuned Phi chat model; deployments and traffic by `phi deploy`.",
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.depends_on),
                ignore_changes=list(DEPLOY_OWNED_PROPERTIES),
            ),
        )
        self.name = endpoint.name
        self.resource_id = endpoint.id
        self.scoring_uri = endpoint.properties.scoring_uri
        self.register_outputs({"name": self.name, "scoring_uri": self.scoring_uri})
