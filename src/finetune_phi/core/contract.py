"""The stack outputs other teams and `phi` consume: names, ids and URIs, never keys.

This module imports nothing from Pulumi so the jobs side can read the contract without
the infrastructure dependencies. The docs' outputs reference is generated from it.
"""

from __future__ import annotations

PROJECT = "finetune-phi"
"""The Pulumi project's name: the config namespace and the `project` tag of every resource."""

FLOW_CONNECTION = "phi3-endpoint"
"""The connection the chat flow's DAG names (flow/promptflow/flow.dag.yaml): made by the stack in the
Foundry project, and by `phi flow connect` locally."""

OUTPUTS: dict[str, str] = {
    "subscriptionId": "Azure subscription the stack deploys into.",
    "tenantId": "Entra tenant of that subscription.",
    "resourceGroupName": "Resource group holding every resource.",
    "location": "Azure region.",
    "environment": "Environment label (also the `environment` tag).",
    "workspaceName": "Azure ML workspace name.",
    "workspaceId": "Azure ML workspace resource id.",
    "storageAccountName": "Workspace storage account.",
    "keyVaultName": "Workspace key vault.",
    "keyVaultUri": "Key vault URI, for secrets read at run time.",
    "containerRegistryLoginServer": "Container registry login server.",
    "applicationInsightsName": "Application Insights component linked to the workspace.",
    "logAnalyticsName": "Log Analytics workspace behind Application Insights.",
    "identityId": "User-assigned identity resource id (compute and endpoint run as it).",
    "identityClientId": "Client id of that identity.",
    "identityPrincipalId": "Principal (object) id of that identity.",
    "gpuComputeName": "GPU training cluster.",
    "cpuComputeName": "CPU cluster of the low-cost path, or null when `cpuCluster` is off.",
    "endpointName": "Managed online endpoint.",
    "scoringUri": "Endpoint scoring URI; its key is fetched at run time, never exported.",
    "foundryHubName": "AI Foundry hub, or null when `foundry` is off.",
    "foundryProjectName": "AI Foundry project the flow runs in, or null when `foundry` is off.",
    "foundryProjectWorkspaceId": "The project's workspace GUID (serverless endpoints name their model by it), or null when `foundry` is off.",
    "foundryConnectionName": "The project's custom-keys connection to the endpoint, or null when `foundry` is off.",
    "contentSafetyEndpoint": "Azure AI Content Safety endpoint (Entra ID only) that `phi data screen` calls, or null when `contentSafety` is off.",
}
