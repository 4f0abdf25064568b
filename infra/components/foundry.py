"""An Azure AI Foundry hub and project, with the flow's connection to the endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import machinelearningservices as ml

from finetune_phi.core.contract import FLOW_CONNECTION, PROJECT
from infra.components.network import PACKAGE_HOSTS, managed_network


@dataclass(frozen=True)
class FoundryProjectArgs:
    resource_group_name: pulumi.Input[str]
    """Resource group of the stack."""
    location: str
    """Azure region."""
    hub_name: str
    """Name of the hub workspace."""
    project_name: str
    """Name of the project workspace."""
    storage_account_id: pulumi.Input[str]
    """The stack's storage account, shared with the hub."""
    key_vault_id: pulumi.Input[str]
    """The stack's key vault, shared with the hub."""
    application_insights_id: pulumi.Input[str]
    """The stack's Application Insights, shared with the hub."""
    container_registry_id: pulumi.Input[str]
    """The stack's container registry, shared with the hub."""
    ml_workspace_name: pulumi.Input[str]
    """Workspace of the online endpoint."""
    endpoint_name: pulumi.Input[str]
    """The endpoint the connection points at."""
    scoring_uri: pulumi.Input[str]
    """Its scoring URI."""
    public_network_access: str
    """Enabled or Disabled, for the hub; its projects inherit the hub's network settings."""
    isolation_mode: str
    """The hub's managed virtual network (its projects inherit it): Disabled (none),
    AllowInternetOutbound or AllowOnlyApprovedOutbound (then with FQDN rules for pip and conda,
    which the flows' compute sessions install from)."""
    tags: Mapping[str, str]
    """Tags for hub and project."""


class FoundryProject(pulumi.ComponentResource):
    """Hub (kind Hub) and project (kind Project) sharing the stack's services, plus a
    custom-keys connection holding the endpoint's scoring URI and key.

    The key is read with listOnlineEndpointKeys at deployment time and stays a secret:
    in the state, in the connection's inputs, and out of every stack output.
    """

    hub_name: pulumi.Output[str]
    project_name: pulumi.Output[str]
    project_workspace_id: pulumi.Output[str]
    """The project's workspace GUID: serverless endpoints name their model by it."""
    connection_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: FoundryProjectArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(f"{PROJECT}:index:FoundryProject", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        identity = ml.ManagedServiceIdentityArgs(type=ml.ManagedServiceIdentityType.SYSTEM_ASSIGNED)
        sku = ml.SkuArgs(name="Basic", tier=ml.SkuTier.BASIC)
        network = managed_network(args.isolation_mode, PACKAGE_HOSTS)
        hub = ml.Workspace(
            f"{name}-hub",
            workspace_name=args.hub_name,
            kind="Hub",
            friendly_name=args.hub_name,
            identity=identity,
            sku=sku,
            storage_account=args.storage_account_id,
            key_vault=args.key_vault_id,
            application_insights=args.application_insights_id,
            container_registry=args.container_registry_id,
            public_network_access=args.public_network_access,
            managed_network=network,
            provision_network_now=True if network is not None else None,
            resource_group_name=args.resource_group_name,
            location=args.location,
            tags=dict(args.tags),
            opts=child,
        )
        project = ml.Workspace(
            f"{name}-project",
            workspace_name=args.project_name,
            kind="Project",
            friendly_name=args.project_name,
            hub_resource_id=hub.id,
            identity=identity,
            sku=sku,
            resource_group_name=args.resource_group_name,
            location=args.location,
            tags=dict(args.tags),
            opts=child,
        )
        keys = ml.list_online_endpoint_keys_output(
            endpoint_name=args.endpoint_name,
            resource_group_name=args.resource_group_name,
            workspace_name=args.ml_workspace_name,
        )
        key = pulumi.Output.secret(keys.primary_key)
        connection = ml.WorkspaceConnection(
            f"{name}-connection",
            connection_name=FLOW_CONNECTION,
            workspace_name=project.name,
            resource_group_name=args.resource_group_name,
            properties=ml.CustomKeysWorkspaceConnectionPropertiesArgs(
                auth_type="CustomKeys",
                category="CustomKeys",
                target=args.scoring_uri,
                credentials=ml.CustomKeysArgs(keys={"key": key}),
                # Prompt flow reads a custom connection's configs from its metadata.
                metadata={"endpoint": args.scoring_uri},
            ),
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["properties"]),
        )
        self.hub_name = hub.name
        self.project_name = project.name
        self.project_workspace_id = project.workspace_id
        self.connection_name = connection.name
        self.register_outputs(
            {
                "hub_name": self.hub_name,
                "project_name": self.project_name,
                "project_workspace_id": self.project_workspace_id,
                "connection_name": self.connection_name,
            }
        )
