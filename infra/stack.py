"""Wires the components of one environment and returns its outputs contract."""

from __future__ import annotations

from typing import Any, Protocol

import pulumi
from pulumi_azure_native import resources

from finetune_phi.core.config import ClusterConfig, StackConfig
from infra.components.compute import ComputeCluster, ComputeClusterArgs
from infra.components.content_safety import ContentSafety, ContentSafetyArgs
from infra.components.endpoint import InferenceEndpoint, InferenceEndpointArgs
from infra.components.foundry import FoundryProject, FoundryProjectArgs
from infra.components.identity import RuntimeIdentity, RuntimeIdentityArgs
from infra.components.workspace import MlWorkspace, MlWorkspaceArgs


class ClientConfig(Protocol):
    """What `authorization.get_client_config()` says about the caller."""

    @property
    def subscription_id(self) -> str: ...

    @property
    def tenant_id(self) -> str: ...

    @property
    def object_id(self) -> str:
        """The caller's principal (a user, or CI's service principal)."""
        ...


def build(cfg: StackConfig, client: ClientConfig) -> dict[str, Any]:
    """Declare every resource of the environment; return the stack outputs by name.

    The keys are exactly `finetune_phi.core.contract.OUTPUTS` (checked by the tests).
    """
    names = cfg.names
    tags = dict(cfg.tags)
    if cfg.existing_resource_group:
        group_id: pulumi.Input[str] = resources.get_resource_group(
            resource_group_name=names.resource_group
        ).id
        group_name: pulumi.Input[str] = names.resource_group
    else:
        group = resources.ResourceGroup(
            "resource-group",
            resource_group_name=names.resource_group,
            location=cfg.location,
            tags=tags,
        )
        group_id, group_name = group.id, group.name

    workspace = MlWorkspace(
        "ml",
        MlWorkspaceArgs(
            resource_group_name=group_name,
            location=cfg.location,
            tenant_id=client.tenant_id,
            names=names,
            tags=tags,
            storage_sku=cfg.storage_sku,
            container_registry_sku=cfg.container_registry_sku,
            key_vault_purge_protection=cfg.key_vault_purge_protection,
            key_vault_retention_days=cfg.key_vault_retention_days,
            log_retention_days=cfg.log_retention_days,
            public_network_access=cfg.workspace_public_network_access,
            isolation_mode=cfg.workspace_isolation_mode,
        ),
    )
    identity = RuntimeIdentity(
        "runtime",
        RuntimeIdentityArgs(
            resource_group_name=group_name,
            location=cfg.location,
            identity_name=names.identity,
            subscription_id=client.subscription_id,
            resource_group_id=group_id,
            storage_account_id=workspace.storage_account_id,
            container_registry_id=workspace.container_registry_id,
            tags=tags,
        ),
    )
    grants = [identity.contributor, identity.blob_reader, identity.acr_pull]

    def cluster(kind: str, name: str, description: str, spec: ClusterConfig) -> ComputeCluster:
        return ComputeCluster(
            kind,
            ComputeClusterArgs(
                resource_group_name=group_name,
                workspace_name=workspace.name,
                location=cfg.location,
                cluster_name=name,
                cluster=spec,
                identity_id=identity.resource_id,
                description=description,
                tags=tags,
                depends_on=grants,
                managed_network=cfg.workspace_isolation_mode != "Disabled",
            ),
        )

    gpu = cluster("gpu", names.gpu_compute, "GPU cluster for fine-tuning jobs", cfg.gpu)
    cpu = (
        cluster("cpu", names.cpu_compute, "CPU cluster for the low-cost path", cfg.cpu)
        if cfg.cpu is not None
        else None
    )
    endpoint = InferenceEndpoint(
        "online",
        InferenceEndpointArgs(
            resource_group_name=group_name,
            workspace_name=workspace.name,
            location=cfg.location,
            endpoint_name=names.endpoint,
            identity_id=identity.resource_id,
            tags=tags,
            depends_on=[identity.acr_pull, identity.blob_reader],
        ),
    )

    foundry = (
        FoundryProject(
            "foundry",
            FoundryProjectArgs(
                resource_group_name=group_name,
                location=cfg.location,
                hub_name=names.foundry_hub,
                project_name=names.foundry_project,
                storage_account_id=workspace.storage_account_id,
                key_vault_id=workspace.key_vault_id,
                application_insights_id=workspace.application_insights_id,
                container_registry_id=workspace.container_registry_id,
                ml_workspace_name=workspace.name,
                endpoint_name=endpoint.name,
                scoring_uri=endpoint.scoring_uri,
                public_network_access=cfg.workspace_public_network_access,
                isolation_mode=cfg.workspace_isolation_mode,
                tags=tags,
            ),
        )
        if cfg.foundry
        else None
    )

    safety = (
        ContentSafety(
            "content-safety",
            ContentSafetyArgs(
                resource_group_name=group_name,
                location=cfg.location,
                account_name=cfg.content_safety.name,
                sku=cfg.content_safety.sku,
                subscription_id=client.subscription_id,
                runtime_principal_id=identity.principal_id,
                deployer_principal_id=client.object_id,
                deployer_principal_type=cfg.content_safety.deployer_principal_type,
                tags=tags,
            ),
        )
        if cfg.content_safety is not None
        else None
    )

    outputs: dict[str, Any] = {
        "subscriptionId": client.subscription_id,
        "tenantId": client.tenant_id,
        "resourceGroupName": group_name,
        "location": cfg.location,
        "environment": cfg.environment,
        "workspaceName": workspace.name,
        "workspaceId": workspace.resource_id,
        "storageAccountName": workspace.storage_account_name,
        "keyVaultName": workspace.key_vault_name,
        "keyVaultUri": workspace.key_vault_uri,
        "containerRegistryLoginServer": workspace.container_registry_login_server,
        "applicationInsightsName": workspace.application_insights_name,
        "logAnalyticsName": workspace.log_analytics_name,
        "identityId": identity.resource_id,
        "identityClientId": identity.client_id,
        "identityPrincipalId": identity.principal_id,
        "gpuComputeName": gpu.name,
        "cpuComputeName": cpu.name if cpu is not None else None,
        "endpointName": endpoint.name,
        "scoringUri": endpoint.scoring_uri,
        "foundryHubName": foundry.hub_name if foundry else None,
        "foundryProjectName": foundry.project_name if foundry else None,
        "foundryProjectWorkspaceId": foundry.project_workspace_id if foundry else None,
        "foundryConnectionName": foundry.connection_name if foundry else None,
        "contentSafetyEndpoint": safety.endpoint if safety else None,
    }
    return outputs
