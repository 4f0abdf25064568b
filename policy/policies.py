"""The CrossGuard rules a stack's preview must pass: `pulumi preview --policy-pack policy`.

Each rule reads a resource as the policy engine sends it: pulumi-azure-native's inputs, in
ARM's camelCase (`props["properties"]["properties"]["scaleSettings"]` for a cluster), numbers
as floats. A rule that looks at a value Pulumi does not know yet during a preview is reported
by the engine as "can't run policy", not as a pass.

Mandatory rules stop a preview; advisory ones only warn, and `policy/prod.json` (passed with
`--policy-pack-config`) makes them mandatory for prod. Each description names the Azure Policy
built-in that checks the same thing in Azure (the dated `POLICY_BUILTINS` table in
src/finetune_phi/core/azure_facts.py), so a platform team can enforce it there as well.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from finetune_phi.core.azure_facts import POLICY_BUILTINS, VM_SIZES, retirement_problem

COMPUTE = "azure-native:machinelearningservices:Compute"
ONLINE_DEPLOYMENT = "azure-native:machinelearningservices:OnlineDeployment"
ONLINE_ENDPOINT = "azure-native:machinelearningservices:OnlineEndpoint"
WORKSPACE = "azure-native:machinelearningservices:Workspace"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
KEY_VAULT = "azure-native:keyvault:Vault"
REGISTRY = "azure-native:containerregistry:Registry"
COGNITIVE_ACCOUNT = "azure-native:cognitiveservices:Account"
CONTENT_SAFETY_KIND = "ContentSafety"

REQUIRED_TAGS = ("project", "environment", "owner", "cost-center", "managed-by")
UNTAGGED_TYPES = frozenset(
    {
        "azure-native:authorization:RoleAssignment",
        "azure-native:machinelearningservices:WorkspaceConnection",
    }
)
"""Azure-native types whose ARM resource has no tags (tests check this against the SDK)."""

DEFAULT_MAX_IDLE_SECONDS = 1800
ENDPOINT_AUTH_MODES = ("Key", "AADToken")
TLS_VERSIONS = ("TLS1_2", "TLS1_3")
MANAGED_NETWORK_MODES = ("AllowInternetOutbound", "AllowOnlyApprovedOutbound")
"""Isolation modes of an Azure ML managed virtual network that put compute inside it
(azure-ai-docs articles/machine-learning/how-to-managed-network.md, ms.date 05/23/2025)."""
# The Azure Policy built-in nearest to the managed-network rule, once the facts table has it:
# it audits workspaces whose isolationMode is not one chosen mode, not the pairing checked here.
_ISOLATION_BUILTIN = "ml-managed-network-isolation-mode"

Props = Mapping[str, Any]
Check = Callable[[Props, Mapping[str, Any]], Iterable[str]]
"""Yields one message per problem with a resource's properties, given the policy's config."""


def _builtin(key: str) -> str:
    """The sentence naming the matching Azure Policy built-in (src/finetune_phi/core/azure_facts.py)."""
    return f" Azure Policy built-in: {_named(key)}."


def _named(key: str) -> str:
    builtin = POLICY_BUILTINS[key]
    return f'"{builtin.display_name}" ({builtin.guid})'


def _section(props: Props, *path: str) -> Props:
    """The nested object at `path`, or an empty one where a level is missing."""
    for key in path:
        value = props.get(key)
        props = value if isinstance(value, Mapping) else {}
    return props


def _aml_cluster(props: Props) -> Props | None:
    """The AmlCompute settings of a Compute resource, or None for other compute types."""
    outer = _section(props, "properties")
    if outer.get("computeType") != "AmlCompute":
        return None
    return _section(outer, "properties")


_DURATION = re.compile(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?")


def _iso_seconds(text: object) -> float | None:
    """Seconds of an ISO 8601 time-only duration ("PT2M", "PT120S"), None if not one."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) and text != "PT" else None
    if match is None:
        return None
    hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _scales_to_zero(props: Props, config: Mapping[str, Any]) -> Iterable[str]:
    cluster = _aml_cluster(props)
    if cluster is None:
        return
    scale = _section(cluster, "scaleSettings")
    limit = float(config.get("maxIdleSeconds", DEFAULT_MAX_IDLE_SECONDS))
    if scale.get("minNodeCount", 0) != 0:
        yield f"minNodeCount is {scale.get('minNodeCount')!r}; it must be 0, so an idle cluster costs nothing"
    idle = scale.get("nodeIdleTimeBeforeScaleDown")
    seconds = _iso_seconds(idle)
    if seconds is None or seconds > limit:
        yield (
            f"nodeIdleTimeBeforeScaleDown is {idle!r}; it must be an ISO 8601 duration of at "
            f"most {limit:g} seconds (maxIdleSeconds)"
        )


# Azure matches VM size names without regard to case; the table spells them canonically.
_CANONICAL_SIZES = {name.lower(): name for name in VM_SIZES}


def _no_retired_sizes(props: Props, config: Mapping[str, Any]) -> Iterable[str]:
    sizes = (
        _section(props, "properties", "properties").get("vmSize"),
        _section(props, "properties").get("instanceType"),
    )
    for size in sizes:
        if not isinstance(size, str):
            continue
        problem = retirement_problem("vm", _CANONICAL_SIZES.get(size.lower(), size))
        if problem:
            yield problem


def _local_auth_off(props: Props, config: Mapping[str, Any]) -> Iterable[str]:
    value = _section(props, "properties").get("disableLocalAuth")
    if value is not True:
        yield f"properties.disableLocalAuth is {value!r}; it must be true (Entra ID only)"


def _ssh_closed(props: Props, config: Mapping[str, Any]) -> Iterable[str]:
    cluster = _aml_cluster(props)
    if cluster is None:
        return
    value = cluster.get("remoteLoginPortPublicAccess")
    if value != "Disabled":
        yield f"remoteLoginPortPublicAccess is {value!r}; it must be 'Disabled'"


def _equals(path: tuple[str, ...], key: str, wanted: object, *allowed: object) -> Check:
    """A check that `key` under `path` is `wanted` (or one of `allowed`), set explicitly."""
    accepted = (wanted, *allowed)

    def check(props: Props, config: Mapping[str, Any]) -> Iterable[str]:
        value = _section(props, *path).get(key)
        if value not in accepted:
            name = ".".join((*path, key))
            rule = " or ".join(repr(v) for v in accepted)
            yield f"{name} is {value!r}; it must be {rule}"

    return check


def _registry_admin_off(props: Props, config: Mapping[str, Any]) -> Iterable[str]:
    if props.get("adminUserEnabled") is True:
        yield "adminUserEnabled is True; the registry's admin user must stay off (use AcrPull)"


def _workspace_private(props: Props, config: Mapping[str, Any]) -> Iterable[str]:
    # A Foundry project has no network settings of its own: it inherits its hub's.
    if props.get("kind") == "Project":
        return
    yield from _equals((), "publicNetworkAccess", "Disabled")(props, config)


def _private_workspace_on_managed_network(props: Props, config: Mapping[str, Any]) -> Iterable[str]:
    # A project inherits its hub's network; an open workspace's compute reaches it anyway.
    if props.get("kind") == "Project" or props.get("publicNetworkAccess") != "Disabled":
        return
    mode = _section(props, "managedNetwork").get("isolationMode")
    if mode not in MANAGED_NETWORK_MODES:
        yield (
            f"managedNetwork.isolationMode is {mode!r} while publicNetworkAccess is 'Disabled'; "
            f"it must be {' or '.join(map(repr, MANAGED_NETWORK_MODES))}: compute outside the "
            "network of a private workspace cannot reach it"
        )


def _content_safety_in_stack(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    accounts = [
        resource
        for resource in args.resources
        if resource.resource_type == COGNITIVE_ACCOUNT
        and resource.props.get("kind") == CONTENT_SAFETY_KIND
    ]
    if not accounts:
        report_violation(
            "the stack has no Azure AI Content Safety account (kind ContentSafety), so training "
            "data cannot be screened (`phi data screen`): `pulumi config set contentSafety true`",
            None,
        )


def _required_tags(props: Props, config: Mapping[str, Any]) -> Iterable[str]:
    tags = _section(props, "tags")
    missing = [tag for tag in REQUIRED_TAGS if not tags.get(tag)]
    if missing:
        yield f"missing or empty tags: {', '.join(missing)} (every taggable resource carries {', '.join(REQUIRED_TAGS)})"


def _taggable(resource_type: str) -> bool:
    return resource_type.startswith("azure-native:") and resource_type not in UNTAGGED_TYPES


def _rule(
    name: str,
    description: str,
    applies_to: Callable[[str], bool],
    check: Check,
    level: EnforcementLevel = EnforcementLevel.MANDATORY,
    config_schema: PolicyConfigSchema | None = None,
) -> ResourceValidationPolicy:
    """A resource rule: `check` runs on every resource whose type `applies_to` accepts."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if applies_to(args.resource_type):
            for problem in check(args.props, args.get_config()):
                report_violation(f"{args.name}: {problem}", None)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=level,
        config_schema=config_schema,
    )


def _of(*types: str) -> Callable[[str], bool]:
    return frozenset(types).__contains__


POLICIES: list[ResourceValidationPolicy] = [
    _rule(
        "compute-scales-to-zero",
        "Azure ML compute clusters keep no node when idle (minNodeCount 0) and release idle "
        "nodes within maxIdleSeconds. No Azure Policy built-in checks clusters; the nearest "
        f"is {_named('ml-compute-instance-idle-shutdown')}, for compute instances.",
        _of(COMPUTE),
        _scales_to_zero,
        config_schema=PolicyConfigSchema(
            properties={
                "maxIdleSeconds": {
                    "type": "integer",
                    "minimum": 60,
                    "default": DEFAULT_MAX_IDLE_SECONDS,
                    "description": "Longest idle time before a cluster releases a node.",
                }
            }
        ),
    ),
    _rule(
        "no-retired-vm-sizes",
        "Compute clusters and online deployments use no VM size Azure has retired (the dated "
        "table in src/finetune_phi/core/azure_facts.py). No Azure Policy built-in.",
        _of(COMPUTE, ONLINE_DEPLOYMENT),
        _no_retired_sizes,
    ),
    _rule(
        "compute-local-auth-disabled",
        "Azure ML compute accepts Entra ID only (disableLocalAuth)."
        + _builtin("ml-compute-local-auth-disabled"),
        _of(COMPUTE),
        _local_auth_off,
    ),
    _rule(
        "compute-ssh-public-access-disabled",
        "Compute cluster nodes do not open SSH to public networks "
        "(remoteLoginPortPublicAccess Disabled). No Azure Policy built-in checks it; the "
        f"nearest is {_named('ml-compute-in-vnet')}.",
        _of(COMPUTE),
        _ssh_closed,
    ),
    _rule(
        "storage-no-public-blob-access",
        "Storage accounts allow no anonymous blob access (allowBlobPublicAccess false)."
        + _builtin("storage-public-access-disallowed"),
        _of(STORAGE_ACCOUNT),
        _equals((), "allowBlobPublicAccess", False),
    ),
    _rule(
        "storage-https-only",
        "Storage accounts accept HTTPS only (enableHttpsTrafficOnly true)."
        + _builtin("storage-secure-transfer"),
        _of(STORAGE_ACCOUNT),
        _equals((), "enableHttpsTrafficOnly", True),
    ),
    _rule(
        "storage-minimum-tls-1-2",
        "Storage accounts refuse TLS older than 1.2 (minimumTlsVersion TLS1_2 or newer)."
        + _builtin("storage-minimum-tls"),
        _of(STORAGE_ACCOUNT),
        _equals((), "minimumTlsVersion", *TLS_VERSIONS),
    ),
    _rule(
        "key-vault-rbac",
        "Key vaults authorize with Azure RBAC, not access policies (enableRbacAuthorization)."
        + _builtin("key-vault-rbac"),
        _of(KEY_VAULT),
        _equals(("properties",), "enableRbacAuthorization", True),
    ),
    _rule(
        "registry-admin-user-disabled",
        "Container registries keep their admin user off (adminUserEnabled)."
        + _builtin("registry-admin-disabled"),
        _of(REGISTRY),
        _registry_admin_off,
    ),
    _rule(
        "endpoint-auth-key-or-entra",
        "Online endpoints authenticate callers with a key or an Entra ID token (authMode Key "
        "or AADToken). No Azure Policy built-in.",
        _of(ONLINE_ENDPOINT),
        _equals(("properties",), "authMode", *ENDPOINT_AUTH_MODES),
    ),
    _rule(
        "required-tags",
        f"Every taggable resource carries the tags {', '.join(REQUIRED_TAGS)}."
        + _builtin("require-tag"),
        _taggable,
        _required_tags,
    ),
    _rule(
        "key-vault-purge-protection",
        "Key vaults have purge protection on, so nothing deleted can be purged before its "
        "retention period ends (advisory; mandatory for prod)."
        + _builtin("key-vault-deletion-protection"),
        _of(KEY_VAULT),
        _equals(("properties",), "enablePurgeProtection", True),
        level=EnforcementLevel.ADVISORY,
    ),
    _rule(
        "workspace-public-network-disabled",
        "Azure ML workspaces and Foundry hubs answer on private endpoints only "
        "(publicNetworkAccess Disabled; advisory, mandatory for prod)."
        + _builtin("ml-workspace-public-network-disabled"),
        _of(WORKSPACE),
        _workspace_private,
        level=EnforcementLevel.ADVISORY,
    ),
    _rule(
        "workspace-private-on-managed-network",
        "Azure ML workspaces and Foundry hubs closed to public networks run their compute in "
        "Azure ML's managed virtual network (managedNetwork.isolationMode AllowInternetOutbound "
        "or AllowOnlyApprovedOutbound); otherwise their clusters and endpoint cannot reach them "
        "(advisory; mandatory for prod). No Azure Policy built-in checks the pairing; the "
        "nearest is "
        + (
            f"{_named(_ISOLATION_BUILTIN)}, which audits one chosen isolation mode."
            if _ISOLATION_BUILTIN in POLICY_BUILTINS
            else f"{_named('ml-compute-in-vnet')}."
        ),
        _of(WORKSPACE),
        _private_workspace_on_managed_network,
        level=EnforcementLevel.ADVISORY,
    ),
    _rule(
        "cognitive-services-local-auth-disabled",
        "Azure AI services accounts (the Content Safety account) accept Entra ID only "
        "(properties.disableLocalAuth true): no key can leak."
        + _builtin("ai-services-local-auth-disabled"),
        _of(COGNITIVE_ACCOUNT),
        _equals(("properties",), "disableLocalAuth", True),
    ),
]

STACK_POLICIES: list[StackValidationPolicy] = [
    StackValidationPolicy(
        name="content-safety-in-stack",
        description="The stack has an Azure AI Content Safety account to screen training data "
        "with (`contentSafety`; advisory, disabled for dev, mandatory for prod). No Azure Policy "
        "built-in: Azure Policy judges resources one at a time, not what a stack lacks.",
        validate=_content_safety_in_stack,
        enforcement_level=EnforcementLevel.ADVISORY,
    ),
]
"""Rules on the stack as a whole: the engine calls them once with every resource."""
