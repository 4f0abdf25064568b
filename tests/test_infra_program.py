"""The Pulumi program under the SDK's mocks, run through the real `infra/__main__.py`."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from finetune_phi.core.config import ConfigError
from finetune_phi.core.contract import OUTPUTS
from finetune_phi.core.roles import BuiltInRole, assignment_name
from tests.pulumi_harness import (
    MOCK_ENDPOINT_KEY,
    ROOT,
    SUBSCRIPTION_ID,
    TENANT_ID,
    Deployment,
    Recording,
    Registration,
    deploy,
    stack_config,
)

ML = "azure-native:machinelearningservices"
TAGGABLE = (
    "azure-native:resources:ResourceGroup",
    "azure-native:storage:StorageAccount",
    "azure-native:keyvault:Vault",
    "azure-native:operationalinsights:Workspace",
    "azure-native:applicationinsights:Component",
    "azure-native:containerregistry:Registry",
    f"{ML}:Workspace",
    "azure-native:managedidentity:UserAssignedIdentity",
    f"{ML}:Compute",
    f"{ML}:OnlineEndpoint",
)


@pytest.fixture(scope="module")
def dev() -> Deployment:
    return deploy("dev", stack_config("dev"))


@pytest.fixture(scope="module")
def prod() -> Deployment:
    return deploy("prod", stack_config("prod"))


def test_dev_declares_every_resource_of_the_platform(dev: Deployment) -> None:
    counts: dict[str, int] = {}
    for registration in dev.recording.custom:
        counts[registration.type] = counts.get(registration.type, 0) + 1
    assert counts == {
        "azure-native:resources:ResourceGroup": 1,
        "azure-native:storage:StorageAccount": 1,
        "azure-native:keyvault:Vault": 1,
        "azure-native:operationalinsights:Workspace": 1,
        "azure-native:applicationinsights:Component": 1,
        "azure-native:containerregistry:Registry": 1,
        f"{ML}:Workspace": 1,
        "azure-native:managedidentity:UserAssignedIdentity": 1,
        "azure-native:authorization:RoleAssignment": 3,
        f"{ML}:Compute": 2,
        f"{ML}:OnlineEndpoint": 1,
    }


def test_every_resource_lives_in_the_stack_location_and_group(dev: Deployment) -> None:
    group = dev.recording.one("azure-native:resources:ResourceGroup")
    assert group.inputs["resourceGroupName"] == "rg-phi-dev"
    for registration in dev.recording.custom:
        if registration.type == "azure-native:authorization:RoleAssignment":
            continue
        assert registration.inputs["location"] == "eastus2", registration.name
        if registration is not group:
            assert registration.inputs["resourceGroupName"] == "rg-phi-dev", registration.name


def test_every_taggable_resource_carries_the_standard_tags(dev: Deployment) -> None:
    expected = {
        "project": "finetune-phi",
        "environment": "dev",
        "stack": "dev",
        "owner": "ml-platform",
        "cost-center": "ml-research",
        "managed-by": "pulumi",
    }
    taggable = [r for r in dev.recording.custom if r.type in TAGGABLE]
    assert len(taggable) == 11
    for registration in taggable:
        assert registration.inputs["tags"] == expected, registration.name


def test_storage_is_v2_https_only_tls12_without_public_blobs(dev: Deployment) -> None:
    inputs = dev.recording.one("azure-native:storage:StorageAccount").inputs
    assert inputs["kind"] == "StorageV2"
    assert inputs["enableHttpsTrafficOnly"] is True
    assert inputs["minimumTlsVersion"] == "TLS1_2"
    assert inputs["allowBlobPublicAccess"] is False
    assert inputs["sku"] == {"name": "Standard_LRS"}


def test_key_vault_uses_rbac_and_purge_protection_follows_config(
    dev: Deployment, prod: Deployment
) -> None:
    dev_vault = dev.recording.one("azure-native:keyvault:Vault").inputs["properties"]
    assert dev_vault["enableRbacAuthorization"] is True
    assert dev_vault["tenantId"] == TENANT_ID
    # Azure refuses enablePurgeProtection=false, so "off" must mean "not sent".
    assert "enablePurgeProtection" not in dev_vault
    assert dev_vault["softDeleteRetentionInDays"] == 7
    prod_vault = prod.recording.one("azure-native:keyvault:Vault").inputs["properties"]
    assert prod_vault["enablePurgeProtection"] is True
    assert prod_vault["softDeleteRetentionInDays"] == 90


def test_workspace_network_access_follows_config(
    dev: Deployment, prod: Deployment, prod_foundry: Deployment
) -> None:
    workspace = f"{ML}:Workspace"
    assert dev.recording.one(workspace).inputs["publicNetworkAccess"] == "Enabled"
    assert prod.recording.one(workspace).inputs["publicNetworkAccess"] == "Disabled"
    hub = prod_foundry.recording.one(workspace, "foundry-hub")
    assert hub.inputs["publicNetworkAccess"] == "Disabled"


@pytest.fixture(scope="module")
def prod_foundry() -> Deployment:
    return deploy("prod", {**stack_config("prod"), "foundry": "true"})


def _managed_networks(deployment: Deployment) -> dict[str, Any]:
    """Workspace kind -> the managedNetwork it is declared with (None: not sent)."""
    return {
        r.inputs["kind"]: r.inputs.get("managedNetwork")
        for r in deployment.recording.of_type(f"{ML}:Workspace")
    }


def test_prod_workspace_and_hub_run_their_compute_on_a_managed_network(
    prod_foundry: Deployment,
) -> None:
    """Closed to public networks, prod's workspace and hub get Azure ML's managed virtual
    network in the mode Pulumi.prod.yaml states, built with them (provisionNetworkNow)
    rather than by the first cluster; the project inherits its hub's."""
    assert stack_config("prod")["workspaceIsolationMode"] == "AllowInternetOutbound"
    networks = _managed_networks(prod_foundry)
    for kind in ("Default", "Hub"):
        # Azure refuses FQDN rules (and so a firewall) outside AllowOnlyApprovedOutbound.
        assert networks[kind] == {
            "isolationMode": "AllowInternetOutbound",
            "enableNetworkMonitor": False,
        }, kind
    assert networks["Project"] is None
    for workspace in prod_foundry.recording.of_type(f"{ML}:Workspace"):
        expected = None if workspace.inputs["kind"] == "Project" else True
        assert workspace.inputs.get("provisionNetworkNow") is expected, workspace.name


def test_dev_has_no_managed_network(dev: Deployment, foundry: Deployment) -> None:
    """dev's public workspace is declared exactly as before: no managedNetwork, no
    provisionNetworkNow, and clusters with public IPs (the SDK's default, always sent)."""
    assert set(_managed_networks(foundry).values()) == {None}
    workspaces = [
        *dev.recording.of_type(f"{ML}:Workspace"),
        *foundry.recording.of_type(f"{ML}:Workspace"),
    ]
    for workspace in workspaces:
        assert "provisionNetworkNow" not in workspace.inputs, workspace.name
    for cluster in dev.recording.of_type(f"{ML}:Compute"):
        assert cluster.inputs["properties"]["properties"]["enableNodePublicIp"] is True


def test_clusters_on_a_managed_network_have_no_public_ip(prod: Deployment) -> None:
    """A cluster made before the managed network has no path into it, so a change of its
    public IP setting (the sign of that move) replaces it."""
    gpu = prod.recording.one(f"{ML}:Compute", "gpu")
    properties = gpu.inputs["properties"]["properties"]
    assert properties["enableNodePublicIp"] is False
    assert "subnet" not in properties  # a managed network takes no subnet of ours
    assert "properties.properties.enableNodePublicIp" in gpu.replace_on_changes
    assert gpu.delete_before_replace


def test_approved_outbound_opens_only_the_hosts_the_jobs_need() -> None:
    deployment = deploy(
        "prod",
        {
            **stack_config("prod"),
            "foundry": "true",
            "workspaceIsolationMode": "AllowOnlyApprovedOutbound",
            "containerRegistrySku": "Premium",
        },
    )
    networks = _managed_networks(deployment)
    packages = {
        "pypi.org",
        "*.pythonhosted.org",
        "anaconda.com",
        "*.anaconda.com",
        "*.anaconda.org",
    }
    hugging_face = {"huggingface.co", "*.huggingface.co", "*.hf.co"}
    for kind, hosts in (("Default", packages | hugging_face), ("Hub", packages)):
        network = networks[kind]
        assert network["isolationMode"] == "AllowOnlyApprovedOutbound", kind
        # FQDN rules are an Azure Firewall: its SKU is stated, not left to a default.
        assert network["firewallSku"] == "Standard", kind
        rules = network["outboundRules"].values()
        assert {rule["destination"] for rule in rules} == hosts, kind
        assert {(rule["type"], rule["category"]) for rule in rules} == {("FQDN", "UserDefined")}


@pytest.mark.parametrize(
    ("config", "other_key"),
    [
        ({"workspaceIsolationMode": "Disabled"}, "workspacePublicNetworkAccess"),
        ({"workspaceIsolationMode": "AllowOnlyApprovedOutbound"}, "containerRegistrySku"),
    ],
)
def test_a_private_workspace_without_a_working_network_is_refused(
    config: dict[str, str], other_key: str
) -> None:
    """prod with its isolation mode Disabled would leave the GPU cluster unable to reach the
    private workspace; approved-only outbound on a Standard registry could not reach the
    registry. Either stops the program with one problem naming both keys."""
    recording = Recording()
    with pytest.raises(ConfigError) as caught:
        deploy("prod", {**stack_config("prod"), **config}, recording)
    [problem] = caught.value.problems
    value = config["workspaceIsolationMode"]
    assert problem.startswith(f"finetune-phi:workspaceIsolationMode = {value!r}: ")
    assert other_key in problem
    assert recording.registrations == []


def test_application_insights_is_workspace_based(dev: Deployment) -> None:
    logs = dev.recording.one("azure-native:operationalinsights:Workspace")
    insights = dev.recording.one("azure-native:applicationinsights:Component").inputs
    assert insights["ingestionMode"] == "LogAnalytics"
    assert insights["workspaceResourceId"].endswith(
        f"/Microsoft.OperationalInsights/workspaces/{logs.inputs['workspaceName']}"
    )
    assert logs.inputs["sku"] == {"name": "PerGB2018"}


def test_registry_has_no_admin_user(dev: Deployment) -> None:
    inputs = dev.recording.one("azure-native:containerregistry:Registry").inputs
    assert inputs["adminUserEnabled"] is False


def test_ml_workspace_links_the_four_services_with_a_system_identity(dev: Deployment) -> None:
    inputs = dev.recording.one(f"{ML}:Workspace").inputs
    assert inputs["kind"] == "Default"
    assert inputs["identity"] == {"type": "SystemAssigned"}
    linked = {
        "storageAccount": "Microsoft.Storage/storageAccounts/stphidev",
        "keyVault": "Microsoft.KeyVault/vaults/kv-phidev-",
        "applicationInsights": "Microsoft.Insights/components/appi-phi-dev",
        "containerRegistry": "Microsoft.ContainerRegistry/registries/crphidev",
    }
    for key, fragment in linked.items():
        assert fragment in inputs[key], key


def _identity_id(deployment: Deployment) -> str:
    identity = deployment.recording.one("azure-native:managedidentity:UserAssignedIdentity")
    assert identity.inputs["resourceName"] == "id-phi-dev"
    return str(deployment.outputs["identityId"])


def test_identity_gets_exactly_the_three_roles(dev: Deployment) -> None:
    group_id = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-phi-dev"
    storage = f"{group_id}/providers/Microsoft.Storage/storageAccounts/{dev.outputs['storageAccountName']}"
    registry_name = dev.outputs["containerRegistryLoginServer"].split(".")[0]
    registry = f"{group_id}/providers/Microsoft.ContainerRegistry/registries/{registry_name}"
    principal = dev.outputs["identityPrincipalId"]
    expected = {
        (BuiltInRole.CONTRIBUTOR, group_id),
        (BuiltInRole.STORAGE_BLOB_DATA_READER, storage),
        (BuiltInRole.ACR_PULL, registry),
    }
    seen = set()
    for assignment in dev.recording.of_type("azure-native:authorization:RoleAssignment"):
        inputs = assignment.inputs
        role = next(r for r in BuiltInRole if inputs["roleDefinitionId"].endswith(r.value))
        assert inputs["roleDefinitionId"] == role.definition_id(SUBSCRIPTION_ID)
        assert inputs["principalId"] == principal
        assert inputs["principalType"] == "ServicePrincipal"
        assert inputs["roleAssignmentName"] == assignment_name(inputs["scope"], role, principal)
        seen.add((role, inputs["scope"]))
    assert seen == expected


def test_gpu_cluster_scales_to_zero_and_runs_as_the_identity(dev: Deployment) -> None:
    gpu = dev.recording.one(f"{ML}:Compute", "gpu")
    properties = gpu.inputs["properties"]
    assert properties["computeType"] == "AmlCompute"
    aml = properties["properties"]
    assert aml["vmSize"] == "Standard_NC24ads_A100_v4"
    assert aml["vmPriority"] == "Dedicated"
    # Mocks see integers as floats.
    assert aml["scaleSettings"] == {
        "minNodeCount": 0.0,
        "maxNodeCount": 1.0,
        "nodeIdleTimeBeforeScaleDown": "PT120S",
    }
    assert gpu.inputs["identity"] == {
        "type": "UserAssigned",
        "userAssignedIdentities": [_identity_id(dev)],
    }
    assert "properties.properties.vmSize" in gpu.replace_on_changes
    assert gpu.delete_before_replace


def test_cpu_cluster_is_optional(dev: Deployment, prod: Deployment) -> None:
    cpu = dev.recording.one(f"{ML}:Compute", "cpu").inputs["properties"]["properties"]
    assert cpu["vmSize"] == "Standard_E16s_v3"
    assert dev.outputs["cpuComputeName"] == "cpu-phidev"
    assert len(prod.recording.of_type(f"{ML}:Compute")) == 1
    assert prod.outputs["cpuComputeName"] is None


def test_cluster_size_nodes_and_priority_follow_config() -> None:
    deployment = deploy(
        "dev",
        {
            "gpuVmSize": "Standard_NC48ads_A100_v4",
            "gpuMaxNodes": "4",
            "gpuMinNodes": "1",
            "gpuIdleSeconds": "900",
            "gpuPriority": "LowPriority",
        },
    )
    aml = deployment.recording.one(f"{ML}:Compute", "gpu").inputs["properties"]["properties"]
    assert aml["vmSize"] == "Standard_NC48ads_A100_v4"
    assert aml["vmPriority"] == "LowPriority"
    assert aml["scaleSettings"]["maxNodeCount"] == 4
    assert aml["scaleSettings"]["minNodeCount"] == 1
    assert aml["scaleSettings"]["nodeIdleTimeBeforeScaleDown"] == "PT900S"


def test_endpoint_uses_key_auth_and_the_identity(dev: Deployment) -> None:
    endpoint = dev.recording.one(f"{ML}:OnlineEndpoint")
    assert endpoint.inputs["properties"]["authMode"] == "Key"
    assert endpoint.inputs["identity"] == {
        "type": "UserAssigned",
        "userAssignedIdentities": [_identity_id(dev)],
    }
    assert endpoint.inputs["workspaceName"] == "mlw-phi-dev"


def _dependency_names(deployment: Deployment, registration: Registration) -> set[str]:
    return {deployment.recording.by_urn(urn).name for urn in registration.dependencies}


def test_endpoint_is_created_after_the_roles_its_deployments_need(dev: Deployment) -> None:
    endpoint = dev.recording.one(f"{ML}:OnlineEndpoint")
    assert {"runtime-acr-pull", "runtime-blob-reader"} <= _dependency_names(dev, endpoint)


def test_a_later_up_never_resets_endpoint_traffic(dev: Deployment) -> None:
    """Pulumi owns the endpoint, `phi deploy` owns its traffic.

    Three things together make a later `pulumi up` keep live traffic: the program sends no
    traffic of its own, the engine is told to ignore changes to it (so it re-sends the
    refreshed live value), and every update refreshes first.
    """
    endpoint = dev.recording.one(f"{ML}:OnlineEndpoint")
    assert "traffic" not in endpoint.inputs["properties"]
    assert "mirrorTraffic" not in endpoint.inputs["properties"]
    assert {"properties.traffic", "properties.mirrorTraffic"} <= set(endpoint.ignore_changes)
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["options"]["refresh"] == "always"


def test_outputs_are_exactly_the_contract(dev: Deployment) -> None:
    assert set(dev.outputs) == set(OUTPUTS)
    assert dev.outputs["subscriptionId"] == SUBSCRIPTION_ID
    assert dev.outputs["resourceGroupName"] == "rg-phi-dev"
    assert dev.outputs["location"] == "eastus2"
    assert dev.outputs["workspaceName"] == "mlw-phi-dev"
    assert dev.outputs["workspaceId"].endswith("/workspaces/mlw-phi-dev")
    assert dev.outputs["keyVaultUri"] == f"https://{dev.outputs['keyVaultName']}.vault.azure.net/"
    assert dev.outputs["gpuComputeName"] == "gpu-phidev"
    assert dev.outputs["scoringUri"] == (
        f"https://{dev.outputs['endpointName']}.eastus2.inference.ml.azure.com/score"
    )
    assert dev.outputs["identityClientId"] == "client-of-id-phi-dev"


def test_no_output_holds_a_key(dev: Deployment) -> None:
    assert [name for name in dev.outputs if "key" in name.lower()] == [
        "keyVaultName",
        "keyVaultUri",
    ]
    assert (
        "azure-native:machinelearningservices:listOnlineEndpointKeys" not in dev.recording.invokes
    )


def test_rerunning_the_same_stack_declares_the_same_thing(dev: Deployment) -> None:
    again = deploy("dev", stack_config("dev"))

    def shape(deployment: Deployment) -> list[tuple[str, str, Any]]:
        return sorted(
            (r.type, r.name, json.dumps(r.inputs, sort_keys=True))
            for r in deployment.recording.custom
        )

    assert shape(again) == shape(dev)
    assert again.outputs == dev.outputs


def test_prod_differs_in_protection_and_capacity_not_shape(
    dev: Deployment, prod: Deployment
) -> None:
    assert prod.outputs["storageAccountName"] != dev.outputs["storageAccountName"]
    assert prod.outputs["endpointName"] != dev.outputs["endpointName"]
    storage = prod.recording.one("azure-native:storage:StorageAccount").inputs
    assert storage["sku"] == {"name": "Standard_ZRS"}
    gpu = prod.recording.one(f"{ML}:Compute", "gpu").inputs["properties"]["properties"]
    assert gpu["scaleSettings"]["maxNodeCount"] == 2


def test_existing_resource_group_is_used_not_created() -> None:
    deployment = deploy(
        "dev", {"existingResourceGroup": "true", "resourceGroupName": "rg-shared-ml"}
    )
    assert deployment.recording.of_type("azure-native:resources:ResourceGroup") == []
    assert "azure-native:resources:getResourceGroup" in deployment.recording.invokes
    contributor = next(
        r.inputs
        for r in deployment.recording.of_type("azure-native:authorization:RoleAssignment")
        if r.inputs["roleDefinitionId"].endswith(BuiltInRole.CONTRIBUTOR.value)
    )
    assert contributor["scope"] == f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-shared-ml"
    assert deployment.outputs["resourceGroupName"] == "rg-shared-ml"


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"gpuMaxNodes": "-1"}, "gpuMaxNodes"),
        ({"gpuMinNodes": "2", "gpuMaxNodes": "1"}, "gpuMinNodes"),
        ({"namePrefix": "Phi-3"}, "namePrefix"),
        ({"gpuIdleSeconds": "90.5"}, "gpuIdleSeconds"),
    ],
)
def test_bad_config_registers_no_resource(config: dict[str, str], key: str) -> None:
    recording = Recording()
    with pytest.raises(ConfigError, match=f"finetune-phi:{key} = "):
        deploy("dev", config, recording)
    assert recording.registrations == []
    assert recording.invokes == ["azure-native:authorization:getClientConfig"]


SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # Pulumi's marker of a secret value on the wire


@pytest.fixture(scope="module")
def foundry() -> Deployment:
    return deploy("dev", {**stack_config("dev"), "foundry": "true"})


def test_foundry_is_off_by_default(dev: Deployment) -> None:
    assert [
        r for r in dev.recording.of_type(f"{ML}:Workspace") if r.inputs["kind"] != "Default"
    ] == []
    assert dev.outputs["foundryHubName"] is None
    assert dev.outputs["foundryProjectName"] is None


def test_foundry_hub_shares_the_stacks_services(foundry: Deployment) -> None:
    hub = foundry.recording.one(f"{ML}:Workspace", "foundry-hub").inputs
    ml = foundry.recording.one(f"{ML}:Workspace", "ml-workspace").inputs
    assert hub["kind"] == "Hub"
    assert hub["workspaceName"] == "hub-phi-dev"
    assert hub["identity"] == {"type": "SystemAssigned"}
    for service in ("storageAccount", "keyVault", "applicationInsights", "containerRegistry"):
        assert hub[service] == ml[service], service


def test_foundry_project_belongs_to_the_hub(foundry: Deployment) -> None:
    project = foundry.recording.one(f"{ML}:Workspace", "foundry-project").inputs
    assert project["kind"] == "Project"
    assert project["workspaceName"] == "proj-phi-dev"
    assert project["hubResourceId"].endswith(
        "/Microsoft.MachineLearningServices/workspaces/hub-phi-dev"
    )


def test_foundry_connection_is_custom_keys_with_the_key_secret(foundry: Deployment) -> None:
    connection = foundry.recording.one(f"{ML}:WorkspaceConnection")
    properties = connection.inputs["properties"]
    assert connection.inputs["connectionName"] == "phi3-endpoint"
    assert connection.inputs["workspaceName"] == "proj-phi-dev"
    assert properties["category"] == "CustomKeys"
    assert properties["authType"] == "CustomKeys"
    assert properties["target"] == foundry.outputs["scoringUri"]
    assert properties["metadata"] == {"endpoint": foundry.outputs["scoringUri"]}
    assert properties["credentials"]["keys"]["key"] == MOCK_ENDPOINT_KEY
    wire_key = connection.wire_inputs["properties"]["credentials"]["keys"]["key"]
    assert SECRET_SIG in json.dumps(wire_key)
    assert (
        "azure-native:machinelearningservices:listOnlineEndpointKeys" in foundry.recording.invokes
    )
    assert MOCK_ENDPOINT_KEY not in json.dumps(foundry.outputs)


def test_foundry_names_are_outputs(foundry: Deployment) -> None:
    assert foundry.outputs["foundryHubName"] == "hub-phi-dev"
    assert foundry.outputs["foundryProjectName"] == "proj-phi-dev"
    assert foundry.outputs["foundryConnectionName"] == "phi3-endpoint"


# --- the optional Content Safety account (on in Pulumi.prod.yaml) ---

ACCOUNT = "azure-native:cognitiveservices:Account"
COGNITIVE_SERVICES_USER = "a97b65f3-24c7-4388-baec-2e87135dc908"


def test_content_safety_is_off_in_dev(dev: Deployment) -> None:
    assert dev.recording.of_type(ACCOUNT) == []
    assert dev.outputs["contentSafetyEndpoint"] is None


def test_prod_has_a_content_safety_account_with_keys_off(prod: Deployment) -> None:
    account = prod.recording.one(ACCOUNT)
    inputs = account.inputs
    assert stack_config("prod")["contentSafety"] == "true"
    assert inputs["kind"] == "ContentSafety"
    assert inputs["sku"] == {"name": "S0"}
    assert inputs["location"] == "eastus2"
    assert inputs["resourceGroupName"] == "rg-phi-prod"
    assert inputs["accountName"].startswith("cs-phi-prod-")
    properties = inputs["properties"]
    assert properties["disableLocalAuth"] is True
    # Entra ID needs the custom subdomain; the endpoint is its URL
    assert properties["customSubDomainName"] == inputs["accountName"]
    assert inputs["tags"]["environment"] == "prod"
    assert prod.outputs["contentSafetyEndpoint"] == (
        f"https://{inputs['accountName']}.cognitiveservices.azure.com/"
    )


def test_runtime_identity_and_deploying_user_may_call_content_safety(prod: Deployment) -> None:
    """Cognitive Services User on the account, for the identity jobs and endpoint run as and
    for the Pulumi caller (`get_client_config().object_id`, of the type deployerPrincipalType
    states: the provider would send User); names deterministic as every other assignment's."""
    from finetune_phi.core.roles import BuiltInRole, assignment_name

    account_name = prod.recording.one(ACCOUNT).inputs["accountName"]
    scope = (
        f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-phi-prod/providers/"
        f"Microsoft.CognitiveServices/accounts/{account_name}"
    )
    grants = {
        r.inputs["principalId"]: r.inputs
        for r in prod.recording.of_type("azure-native:authorization:RoleAssignment")
        if r.inputs["scope"] == scope
    }
    assert set(grants) == {prod.outputs["identityPrincipalId"], "object"}
    for principal, inputs in grants.items():
        assert inputs["roleDefinitionId"] == (
            f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/"
            f"roleDefinitions/{COGNITIVE_SERVICES_USER}"
        )
        assert inputs["roleAssignmentName"] == assignment_name(
            scope, BuiltInRole.COGNITIVE_SERVICES_USER, principal
        )
    assert grants[prod.outputs["identityPrincipalId"]]["principalType"] == "ServicePrincipal"
    # prod deploys from CI: Pulumi.prod.yaml says the caller is a service principal.
    assert grants["object"]["principalType"] == "ServicePrincipal"


def test_a_person_deploying_is_granted_as_a_user() -> None:
    deployment = deploy("prod", {**stack_config("prod"), "deployerPrincipalType": "User"})
    types = {
        r.inputs["principalId"]: r.inputs["principalType"]
        for r in deployment.recording.of_type("azure-native:authorization:RoleAssignment")
    }
    assert types["object"] == "User"


def test_content_safety_in_an_unsupported_region_registers_nothing() -> None:
    recording = Recording()
    with pytest.raises(ConfigError, match="finetune-phi:contentSafety = 'true': "):
        deploy("dev", {"contentSafety": "true", "location": "brazilsouth"}, recording)
    assert recording.registrations == []
