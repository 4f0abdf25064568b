"""The stack's configuration keys: one table, read by the program, Pulumi.yaml and the docs.

Every key lives in the `finetune-phi` namespace (`pulumi config set gpuMaxNodes 2`). The
defaults reproduce the tutorial's dev environment. `tests/test_docs.py` checks that
Pulumi.yaml says exactly what this table says, and the docs' configuration reference is
generated from it. A name key is spelt like the stack output that reports the name
(`gpuComputeName`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from finetune_phi.core.azure_facts import DEFAULT_CPU_VM, DEFAULT_TRAINING_VM


class Kind(Enum):
    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"


@dataclass(frozen=True)
class Setting:
    key: str
    kind: Kind
    default: str | int | bool | None
    description: str


NAME_OVERRIDES: dict[str, str] = {
    "resourceGroupName": "resource group",
    "storageAccountName": "storage account",
    "keyVaultName": "key vault",
    "containerRegistryName": "container registry",
    "logAnalyticsName": "Log Analytics workspace",
    "applicationInsightsName": "Application Insights component",
    "workspaceName": "Azure ML workspace",
    "identityName": "user-assigned identity",
    "gpuComputeName": "GPU compute cluster",
    "cpuComputeName": "CPU compute cluster",
    "endpointName": "managed online endpoint",
    "foundryHubName": "AI Foundry hub",
    "foundryProjectName": "AI Foundry project",
}

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "location",
        Kind.STRING,
        "eastus2",
        "Azure region of every resource: a public region's programmatic name (see extraRegions).",
    ),
    Setting(
        "extraRegions",
        Kind.STRING,
        "",
        "Comma-separated regions to accept beyond the known list in src/finetune_phi/core/azure_facts.py "
        "(a region newer than the list).",
    ),
    Setting(
        "extraVmSizes",
        Kind.STRING,
        "",
        "Comma-separated VM sizes to accept beyond the table in src/finetune_phi/core/azure_facts.py (a size "
        "newer than the table; retired sizes stay refused).",
    ),
    Setting(
        "namePrefix",
        Kind.STRING,
        "phi",
        "Start of every derived name: 2-10 lowercase letters or digits, starting with a letter.",
    ),
    Setting(
        "environment",
        Kind.STRING,
        None,
        "Environment label used in names and the `environment` tag: 1-10 lowercase letters "
        "or digits, starting with a letter. Defaults to the stack name (unset it to get that; '' is refused).",
    ),
    Setting(
        "owner", Kind.STRING, "unassigned", "Value of the `owner` tag (no control characters)."
    ),
    Setting(
        "costCenter",
        Kind.STRING,
        "unassigned",
        "Value of the `cost-center` tag (no control characters).",
    ),
    Setting(
        "existingResourceGroup",
        Kind.BOOLEAN,
        False,
        "Deploy into the existing resource group named by `resourceGroupName` "
        "instead of creating one (then `pulumi destroy` leaves the group itself).",
    ),
    Setting("storageSku", Kind.STRING, "Standard_LRS", "SKU of the storage account (StorageV2)."),
    Setting(
        "containerRegistrySku",
        Kind.STRING,
        "Basic",
        "SKU of the container registry: Basic, Standard or Premium.",
    ),
    Setting(
        "keyVaultPurgeProtection",
        Kind.BOOLEAN,
        False,
        "Turn on key vault purge protection. It cannot be turned off again, and a purge-"
        "protected vault's name stays taken for its retention period after `pulumi destroy`.",
    ),
    Setting(
        "keyVaultRetentionDays",
        Kind.INTEGER,
        7,
        "Days a deleted key vault stays recoverable (7-90).",
    ),
    Setting(
        "logRetentionDays",
        Kind.INTEGER,
        30,
        "Days Log Analytics keeps data (30-730).",
    ),
    Setting(
        "workspacePublicNetworkAccess",
        Kind.STRING,
        "Enabled",
        "Enabled or Disabled: whether the Azure ML workspace and the AI Foundry hub answer on "
        "public networks. Disabled needs a private endpoint for every client, `phi` included.",
    ),
    Setting(
        "workspaceIsolationMode",
        Kind.STRING,
        None,
        "Outbound isolation of Azure ML's managed virtual network, where the workspace's (and the "
        "AI Foundry hub's) clusters and endpoint run: Disabled (no managed network), "
        "AllowInternetOutbound or AllowOnlyApprovedOutbound (FQDN rules for PyPI, conda and Hugging "
        "Face, through an Azure Firewall billed by the hour; needs containerRegistrySku Premium). "
        "Defaults to AllowInternetOutbound when workspacePublicNetworkAccess is Disabled, else "
        "Disabled; Disabled beside a private workspace is refused. Once on, a managed network "
        "cannot be turned off, nor AllowOnlyApprovedOutbound loosened.",
    ),
    Setting(
        "gpuVmSize",
        Kind.STRING,
        DEFAULT_TRAINING_VM,
        "VM size of the GPU training cluster (a retired size is refused). Changing it replaces the cluster.",
    ),
    Setting("gpuMinNodes", Kind.INTEGER, 0, "Minimum nodes of the GPU cluster; 0 scales to zero."),
    Setting("gpuMaxNodes", Kind.INTEGER, 1, "Maximum nodes of the GPU cluster (1-100)."),
    Setting(
        "gpuIdleSeconds",
        Kind.INTEGER,
        120,
        "Idle seconds before GPU nodes are released (60-86400, whole seconds).",
    ),
    Setting(
        "gpuPriority",
        Kind.STRING,
        "Dedicated",
        "VM priority of the GPU cluster: Dedicated or LowPriority.",
    ),
    Setting(
        "cpuCluster",
        Kind.BOOLEAN,
        False,
        "Also create the CPU cluster of the tutorial's low-cost path.",
    ),
    Setting("cpuVmSize", Kind.STRING, DEFAULT_CPU_VM, "VM size of the optional CPU cluster."),
    Setting("cpuMaxNodes", Kind.INTEGER, 1, "Maximum nodes of the optional CPU cluster (1-100)."),
    Setting(
        "foundry",
        Kind.BOOLEAN,
        False,
        "Also create an Azure AI Foundry hub and project sharing the stack's services, with the "
        "flow's custom-keys connection `phi3-endpoint` to the endpoint.",
    ),
    Setting(
        "contentSafety",
        Kind.BOOLEAN,
        False,
        "Also create an Azure AI Content Safety account (Entra ID only: local keys off) for "
        "`phi data screen` and the safety gate, with Cognitive Services User for the runtime "
        "identity and the deploying user. Its region must offer text analysis.",
    ),
    Setting(
        "contentSafetySku",
        Kind.STRING,
        "S0",
        "SKU of the Content Safety account: S0, or F0 (free; 5 requests a second).",
    ),
    Setting(
        "deployerPrincipalType",
        Kind.STRING,
        "User",
        "What runs `pulumi up`, granted Cognitive Services User on the Content Safety account: "
        "User, or ServicePrincipal where CI (OIDC) deploys.",
    ),
    *(
        Setting(
            key,
            Kind.STRING,
            None,
            f"Name of the {what}, overriding the derived name (unset it, not empty, for the derived one).",
        )
        for key, what in NAME_OVERRIDES.items()
    ),
)

SETTINGS_BY_KEY: dict[str, Setting] = {setting.key: setting for setting in SETTINGS}

DEPRECATED_KEYS: dict[str, str] = {
    "appInsightsName": "applicationInsightsName",
    "gpuClusterName": "gpuComputeName",
    "cpuClusterName": "cpuComputeName",
}
"""Old key -> its new name (the stack output's). An old key is still accepted, with a warning."""
