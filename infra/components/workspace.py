"""The Azure ML workspace with the four services it is linked to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import (
    applicationinsights,
    containerregistry,
    keyvault,
    machinelearningservices,
    operationalinsights,
    storage,
)

from finetune_phi.core.config import ResourceNames
from finetune_phi.core.contract import PROJECT
from infra.components.network import HUGGING_FACE_HOSTS, PACKAGE_HOSTS, managed_network


@dataclass(frozen=True)
class MlWorkspaceArgs:
    resource_group_name: pulumi.Input[str]
    """Resource group of every resource in this component."""
    location: str
    """Azure region."""
    tenant_id: str
    """Entra tenant that the key vault trusts."""
    names: ResourceNames
    """Names of the workspace, storage account, key vault, registry and monitoring."""
    tags: Mapping[str, str]
    """Tags for every resource."""
    storage_sku: str
    """Storage account SKU, e.g. Standard_LRS."""
    container_registry_sku: str
    """Container registry SKU: Basic, Standard or Premium."""
    key_vault_purge_protection: bool
    """Turn on purge protection (irreversible)."""
    key_vault_retention_days: int
    """Soft-delete retention of the key vault, 7-90 days."""
    log_retention_days: int
    """Retention of the Log Analytics workspace."""
    public_network_access: str
    """Enabled or Disabled: whether the workspace answers on public networks."""
    isolation_mode: str
    """Its managed virtual network, where the clusters and the endpoint run: Disabled (none),
    AllowInternetOutbound or AllowOnlyApprovedOutbound (then with FQDN rules for the fine-tune
    job's package and Hugging Face hosts)."""


class MlWorkspace(pulumi.ComponentResource):
    """Storage, key vault, monitoring, registry and the Azure ML workspace linked to them.

    The workspace keeps its system-assigned identity: Azure grants it what it needs on the
    four linked services when it is created.
    """

    name: pulumi.Output[str]
    resource_id: pulumi.Output[str]
    storage_account_name: pulumi.Output[str]
    storage_account_id: pulumi.Output[str]
    key_vault_name: pulumi.Output[str]
    key_vault_uri: pulumi.Output[str]
    key_vault_id: pulumi.Output[str]
    container_registry_id: pulumi.Output[str]
    container_registry_login_server: pulumi.Output[str]
    log_analytics_name: pulumi.Output[str]
    application_insights_name: pulumi.Output[str]
    application_insights_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: MlWorkspaceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(f"{PROJECT}:index:MlWorkspace", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        common = {
            "resource_group_name": args.resource_group_name,
            "location": args.location,
            "tags": dict(args.tags),
        }

        account = storage.StorageAccount(
            f"{name}-storage",
            account_name=args.names.storage_account,
            kind=storage.Kind.STORAGE_V2,
            sku=storage.SkuArgs(name=args.storage_sku),
            enable_https_traffic_only=True,
            minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
            allow_blob_public_access=False,
            **common,
            opts=child,
        )
        vault = keyvault.Vault(
            f"{name}-vault",
            vault_name=args.names.key_vault,
            properties=keyvault.VaultPropertiesArgs(
                tenant_id=args.tenant_id,
                sku=keyvault.SkuArgs(family=keyvault.SkuFamily.A, name=keyvault.SkuName.STANDARD),
                enable_rbac_authorization=True,
                enable_soft_delete=True,
                soft_delete_retention_in_days=args.key_vault_retention_days,
                # Azure rejects enablePurgeProtection=false: "off" means leaving it out.
                enable_purge_protection=True if args.key_vault_purge_protection else None,
            ),
            **common,
            opts=child,
        )
        logs = operationalinsights.Workspace(
            f"{name}-logs",
            workspace_name=args.names.log_analytics,
            sku=operationalinsights.WorkspaceSkuArgs(name="PerGB2018"),
            retention_in_days=args.log_retention_days,
            **common,
            opts=child,
        )
        insights = applicationinsights.Component(
            f"{name}-insights",
            resource_name_=args.names.application_insights,
            kind="web",
            application_type=applicationinsights.ApplicationType.WEB,
            ingestion_mode=applicationinsights.IngestionMode.LOG_ANALYTICS,
            workspace_resource_id=logs.id,
            **common,
            opts=child,
        )
        registry = containerregistry.Registry(
            f"{name}-registry",
            registry_name=args.names.container_registry,
            sku=containerregistry.SkuArgs(name=args.container_registry_sku),
            admin_user_enabled=False,
            **common,
            opts=child,
        )
        network = managed_network(args.isolation_mode, {**PACKAGE_HOSTS, **HUGGING_FACE_HOSTS})
        workspace = machinelearningservices.Workspace(
            f"{name}-workspace",
            workspace_name=args.names.workspace,
            kind="Default",
            friendly_name=args.names.workspace,
            identity=machinelearningservices.ManagedServiceIdentityArgs(
                type=machinelearningservices.ManagedServiceIdentityType.SYSTEM_ASSIGNED
            ),
            sku=machinelearningservices.SkuArgs(
                name="Basic", tier=machinelearningservices.SkuTier.BASIC
            ),
            storage_account=account.id,
            key_vault=vault.id,
            application_insights=insights.id,
            container_registry=registry.id,
            public_network_access=args.public_network_access,
            managed_network=network,
            # Built with the workspace, not by the first cluster (about 30 minutes, which can
            # time that cluster out); an online deployment needs it built first.
            provision_network_now=True if network is not None else None,
            **common,
            opts=child,
        )

        self.name = workspace.name
        self.resource_id = workspace.id
        self.storage_account_name = account.name
        self.storage_account_id = account.id
        self.key_vault_name = vault.name
        self.key_vault_uri = vault.properties.vault_uri
        self.key_vault_id = vault.id
        self.container_registry_id = registry.id
        self.container_registry_login_server = registry.login_server
        self.log_analytics_name = logs.name
        self.application_insights_name = insights.name
        self.application_insights_id = insights.id
        self.register_outputs(
            {
                "name": self.name,
                "resource_id": self.resource_id,
                "storage_account_name": self.storage_account_name,
                "key_vault_uri": self.key_vault_uri,
                "container_registry_login_server": self.container_registry_login_server,
            }
        )
