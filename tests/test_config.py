"""Stack config: defaults reproduce the tutorial; every bad value is named with its rule."""

from __future__ import annotations

import pytest

from finetune_phi.core.config import ConfigError, StackConfig, parse
from finetune_phi.core.naming import RULES

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"


def parse_dev(**values: str) -> StackConfig:
    return parse(values, stack="dev", subscription_id=SUBSCRIPTION)


def problems(**values: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_dev(**values)
    return caught.value.problems


def test_defaults_reproduce_the_tutorial() -> None:
    config = parse_dev()
    assert config.location == "eastus2"
    assert config.gpu.vm_size == "Standard_NC24ads_A100_v4"
    assert (config.gpu.min_nodes, config.gpu.max_nodes) == (0, 1)
    assert config.gpu.idle_seconds == 120
    assert config.gpu.priority == "Dedicated"
    assert config.cpu is None
    assert config.key_vault_purge_protection is False
    assert config.environment == "dev"


def test_cpu_cluster_is_the_tutorials_low_cost_path() -> None:
    config = parse_dev(cpuCluster="true")
    assert config.cpu is not None
    assert config.cpu.vm_size == "Standard_E16s_v3"
    assert config.cpu.min_nodes == 0


def test_tags_carry_project_environment_owner_cost_centre_and_manager() -> None:
    config = parse_dev(owner="ml-platform", costCenter="cc-42")
    assert config.tags == {
        "project": "finetune-phi",
        "environment": "dev",
        "stack": "dev",
        "owner": "ml-platform",
        "cost-center": "cc-42",
        "managed-by": "pulumi",
    }


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("gpuMaxNodes", "-1", "between 1 and 100"),
        ("gpuMaxNodes", "two", "whole number"),
        ("gpuIdleSeconds", "120.5", "whole number seconds"),
        ("gpuIdleSeconds", "2m", "whole number seconds"),
        ("gpuIdleSeconds", "30", "between 60 and 86400 seconds"),
        ("gpuPriority", "Spot", "one of Dedicated, LowPriority"),
        ("gpuVmSize", "NC24", "Azure VM size"),
        ("namePrefix", "Phi_3", "2-10 lowercase letters or digits"),
        ("namePrefix", "averyverylongprefix", "2-10 lowercase letters or digits"),
        ("namePrefix", "3phi", "starting with a letter"),
        ("environment", "Staging-EU", "1-10 lowercase letters or digits"),
        ("keyVaultPurgeProtection", "yes", "true or false"),
        ("keyVaultRetentionDays", "3", "between 7 and 90"),
        ("logRetentionDays", "1000", "between 30 and 730"),
        ("storageSku", "Premium_Fast", "must be one of"),
        ("containerRegistrySku", "Gold", "Basic, Standard, Premium"),
        ("workspacePublicNetworkAccess", "Private", "one of Enabled, Disabled"),
        (
            "workspaceIsolationMode",
            "Private",
            "one of Disabled, AllowInternetOutbound, AllowOnlyApprovedOutbound",
        ),
        ("storageAccountName", "My_Storage", "lowercase letters and digits only"),
        ("keyVaultName", "kv--double", "single hyphens"),
        ("keyVaultName", "this-vault-name-is-far-too-long", "3-24 characters"),
        ("endpointName", "1-endpoint", "starting with a letter"),
        ("gpuComputeName", "gpu-cluster-for-training", "3-16 characters"),
        ("workspaceName", "ws", "3-33 characters"),
        ("gpuMaxNode", "4", "unknown key"),
    ],
)
def test_bad_value_is_rejected_naming_key_value_and_rule(key: str, value: str, rule: str) -> None:
    [problem] = problems(**{key: value})
    assert problem.startswith(f"finetune-phi:{key} = {value!r}: ")
    assert rule in problem


def test_min_nodes_above_max_nodes_is_rejected() -> None:
    [problem] = problems(gpuMinNodes="3", gpuMaxNodes="2")
    assert problem == "finetune-phi:gpuMinNodes = 3: must not exceed gpuMaxNodes (2)"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_dev(gpuMaxNodes="-1", namePrefix="BAD", gpuIdleSeconds="1.5")
    message = str(caught.value)
    assert "3 problem(s)" in message
    assert "no resource was declared" in message
    for key in ("gpuMaxNodes", "namePrefix", "gpuIdleSeconds"):
        assert f"finetune-phi:{key}" in message


def test_existing_resource_group_needs_its_name() -> None:
    [problem] = problems(existingResourceGroup="true")
    assert problem.startswith("finetune-phi:resourceGroupName = None: is required")
    config = parse_dev(existingResourceGroup="true", resourceGroupName="rg-shared")
    assert config.names.resource_group == "rg-shared"


def test_a_stack_name_that_cannot_be_an_environment_label_asks_for_one() -> None:
    with pytest.raises(ConfigError, match="finetune-phi:environment = 'staging-eu'"):
        parse({}, stack="staging-eu", subscription_id=SUBSCRIPTION)
    config = parse({"environment": "stgeu"}, stack="staging-eu", subscription_id=SUBSCRIPTION)
    assert config.names.workspace == "mlw-phi-stgeu"


def test_every_name_can_be_overridden() -> None:
    overrides = {
        "resourceGroupName": "rg-custom",
        "storageAccountName": "stcustom01",
        "keyVaultName": "kv-custom-01",
        "containerRegistryName": "crcustom01",
        "logAnalyticsName": "log-custom",
        "applicationInsightsName": "appi-custom",
        "workspaceName": "mlw-custom",
        "identityName": "id-custom",
        "gpuComputeName": "gpu-custom",
        "cpuComputeName": "cpu-custom",
        "endpointName": "ep-custom-01",
        "foundryHubName": "hub-custom",
        "foundryProjectName": "proj-custom",
    }
    names = parse_dev(**overrides).names
    assert sorted(vars(names).values()) == sorted(overrides.values())


@pytest.mark.parametrize("prefix", ["ab", "abcdefghij", "a123456789"])
@pytest.mark.parametrize("stack", ["d", "production", "p1234567890"[:10]])
def test_derived_names_fit_azure_rules_at_every_length(prefix: str, stack: str) -> None:
    config = parse({"namePrefix": prefix}, stack=stack, subscription_id=SUBSCRIPTION)
    for key, name in {
        "resourceGroupName": config.names.resource_group,
        "storageAccountName": config.names.storage_account,
        "keyVaultName": config.names.key_vault,
        "containerRegistryName": config.names.container_registry,
        "workspaceName": config.names.workspace,
        "gpuComputeName": config.names.gpu_compute,
        "endpointName": config.names.endpoint,
    }.items():
        assert RULES[key].violation(name) is None, (key, name)


def test_old_name_keys_are_accepted_with_a_deprecation_message() -> None:
    config = parse_dev(gpuClusterName="gpu-old", appInsightsName="appi-old")
    assert config.names.gpu_compute == "gpu-old"
    assert config.names.application_insights == "appi-old"
    assert any(
        "finetune-phi:gpuClusterName is deprecated: rename it to gpuComputeName" in warning
        for warning in config.deprecations
    )
    assert len(config.deprecations) == 2


def test_an_old_key_beside_its_new_name_is_refused() -> None:
    [problem] = problems(cpuClusterName="cpu-a", cpuComputeName="cpu-b")
    assert problem.startswith(
        "finetune-phi:cpuClusterName = 'cpu-a': is the old name of cpuComputeName"
    )


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (
            {"cpuCluster": "true", "gpuComputeName": "cluster-1", "cpuComputeName": "Cluster-1"},
            "finetune-phi:cpuComputeName = 'Cluster-1': is also gpuComputeName: the compute clusters of the workspace need distinct names",
        ),
        (
            {"foundry": "true", "foundryHubName": "mlw-shared", "workspaceName": "mlw-shared"},
            "finetune-phi:foundryHubName = 'mlw-shared': is also workspaceName",
        ),
        (
            {"foundry": "true", "foundryHubName": "hub-x", "foundryProjectName": "hub-x"},
            "finetune-phi:foundryProjectName = 'hub-x': is also foundryHubName",
        ),
        (
            {"gpuMaxNodes": "9" * 5000},
            "finetune-phi:gpuMaxNodes = '" + "9" * 5000 + "': must be a whole number",
        ),
        (
            {"location": "westmars"},
            "finetune-phi:location = 'westmars': not an Azure region in src/finetune_phi/core/azure_facts.py",
        ),
        ({"location": "swedencentrl"}, "(did you mean swedencentral?)"),
        (
            {"gpuVmSize": "Standard_ND96imaginary_v9"},
            "not an Azure VM size in src/finetune_phi/core/azure_facts.py",
        ),
    ],
)
def test_scopes_integers_regions_and_sizes_are_checked(
    values: dict[str, str], problem: str
) -> None:
    [found] = problems(**values)
    assert problem in found


def test_a_newer_region_or_size_is_accepted_once_listed() -> None:
    config = parse_dev(
        location="newregion1",
        extraRegions="newregion1, other",
        gpuVmSize="Standard_ND96imaginary_v9",
        extraVmSizes="Standard_ND96imaginary_v9",
    )
    assert config.location == "newregion1"
    assert config.gpu.vm_size == "Standard_ND96imaginary_v9"
    [problem] = problems(gpuVmSize="Standard_NC6s_v3", extraVmSizes="Standard_NC6s_v3")
    assert "retired by Azure on 2025-09-30" in problem


@pytest.mark.parametrize(
    ("key", "default"),
    [
        ("environment", "the stack name"),
        ("storageAccountName", "the derived name"),
        ("resourceGroupName", "the derived name"),
        ("gpuComputeName", "the derived name"),
        ("endpointName", "the derived name"),
        ("workspaceIsolationMode", "Disabled (derived from workspacePublicNetworkAccess)"),
    ],
)
def test_an_empty_value_is_refused_not_read_as_unset(key: str, default: str) -> None:
    """`environment: ''` once became the stack name and `storageAccountName: ''` the
    derived name, silently: an empty value is a mistake to name, not a default."""
    assert problems(**{key: ""}) == [
        f"finetune-phi:{key} = '': is empty; set a value, or `pulumi config rm {key}` for {default}"
    ]


def test_an_empty_group_name_beside_an_existing_group_is_one_problem() -> None:
    [problem] = problems(existingResourceGroup="true", resourceGroupName="")
    assert problem.startswith("finetune-phi:resourceGroupName = '': is empty")


@pytest.mark.parametrize("key", ["owner", "costCenter"])
@pytest.mark.parametrize("value", ["ml\x00platform", "ml-platform\n", "a\tb", "x\x1b[31m", "\x7f"])
def test_a_tag_value_with_a_control_character_is_refused(key: str, value: str) -> None:
    assert problems(**{key: value}) == [
        f"finetune-phi:{key} = {value!r}: must be 1-256 characters, none of them a control "
        "character (NUL, newline, tab...)"
    ]


@pytest.mark.parametrize("value", ["Ada Lovelace", "équipe-données", "a" * 256, "x/y@z.com"])
def test_ordinary_tag_values_still_pass(value: str) -> None:
    assert parse_dev(owner=value, costCenter=value).tags["owner"] == value
    [problem] = problems(owner="a" * 257)
    assert "must be 1-256 characters" in problem


def test_a_private_workspace_gets_a_managed_network_unless_told_otherwise() -> None:
    """The isolation mode's default follows workspacePublicNetworkAccess: an open workspace
    keeps no managed network (dev unchanged), a private one gets AllowInternetOutbound."""
    assert parse_dev().workspace_isolation_mode == "Disabled"
    private = parse_dev(workspacePublicNetworkAccess="Disabled")
    assert private.workspace_isolation_mode == "AllowInternetOutbound"
    # An open workspace may still put its compute on a managed network.
    assert (
        parse_dev(workspaceIsolationMode="AllowInternetOutbound").workspace_isolation_mode
        == "AllowInternetOutbound"
    )


def test_a_private_workspace_without_a_managed_network_is_refused_naming_both_keys() -> None:
    assert problems(workspacePublicNetworkAccess="Disabled", workspaceIsolationMode="Disabled") == [
        "finetune-phi:workspaceIsolationMode = 'Disabled': cannot be Disabled while "
        "workspacePublicNetworkAccess is Disabled: the clusters and the endpoint would run "
        "outside the private workspace's network and could not reach it; use "
        "AllowInternetOutbound (the default for a private workspace) or "
        "AllowOnlyApprovedOutbound, or set workspacePublicNetworkAccess to Enabled"
    ]


@pytest.mark.parametrize("registry", ["Basic", "Standard"])
def test_approved_only_outbound_needs_a_premium_registry(registry: str) -> None:
    """In that mode the managed network reaches the registry through a private endpoint,
    which only a Premium registry takes."""
    [problem] = problems(
        workspacePublicNetworkAccess="Disabled",
        workspaceIsolationMode="AllowOnlyApprovedOutbound",
        containerRegistrySku=registry,
    )
    assert problem.startswith("finetune-phi:workspaceIsolationMode = 'AllowOnlyApprovedOutbound'")
    assert f"needs containerRegistrySku Premium (it is {registry})" in problem
    config = parse_dev(
        workspacePublicNetworkAccess="Disabled",
        workspaceIsolationMode="AllowOnlyApprovedOutbound",
        containerRegistrySku="Premium",
    )
    assert config.workspace_isolation_mode == "AllowOnlyApprovedOutbound"


# --- contentSafety: the optional Azure AI Content Safety account ---


def test_content_safety_is_off_by_default_and_named_uniquely_when_on() -> None:
    assert parse_dev().content_safety is None
    config = parse_dev(contentSafety="true")
    assert config.content_safety is not None
    # The name is also the custom subdomain, unique in all Azure: it carries the suffix.
    assert config.content_safety.name == f"cs-phi-dev-{config.suffix}"
    assert config.content_safety.sku == "S0"
    assert parse_dev(contentSafety="true", contentSafetySku="F0").content_safety.sku == "F0"  # type: ignore[union-attr]


def test_content_safety_in_a_region_without_text_analysis_is_refused() -> None:
    [problem] = problems(contentSafety="true", location="brazilsouth")
    assert problem.startswith("finetune-phi:contentSafety = 'true': ")
    assert "'brazilsouth'" in problem
    assert "eastus2" in problem
    # off, the region does not matter
    assert parse_dev(location="brazilsouth").content_safety is None


@pytest.mark.parametrize(("key", "value"), [("contentSafetySku", "S1"), ("contentSafety", "yes")])
def test_bad_content_safety_values_are_named(key: str, value: str) -> None:
    [problem] = problems(**{key: value})
    assert problem.startswith(f"finetune-phi:{key} = {value!r}: ")
