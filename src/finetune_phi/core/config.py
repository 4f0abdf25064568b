"""Typed stack configuration, read once and validated before any resource is declared.

`parse` turns the raw `finetune-phi:*` values into a frozen `StackConfig` or raises one
`ConfigError` listing every bad key with its value and the rule it breaks. It has no Pulumi
dependency, so it is tested directly; `load` feeds it from the running Pulumi program.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from finetune_phi.core import naming
from finetune_phi.core.azure_facts import CONTENT_SAFETY_REGIONS as CONTENT_SAFETY_REGIONS
from finetune_phi.core.azure_facts import CONTENT_SAFETY_SKUS as CONTENT_SAFETY_SKUS
from finetune_phi.core.azure_facts import REGIONS, VM_SIZES, retirement_problem
from finetune_phi.core.contract import PROJECT
from finetune_phi.core.settings import DEPRECATED_KEYS, NAME_OVERRIDES, SETTINGS_BY_KEY

# CONTENT_SAFETY_SKUS and CONTENT_SAFETY_REGIONS are azure_facts', re-exported under the names
# config always had.

_PREFIX_PATTERN = r"[a-z][a-z0-9]{1,9}"
_ENVIRONMENT_PATTERN = r"[a-z][a-z0-9]{0,9}"
_STORAGE_SKUS = (
    "Standard_LRS",
    "Standard_GRS",
    "Standard_RAGRS",
    "Standard_ZRS",
    "Standard_GZRS",
    "Standard_RAGZRS",
)
_TAG_VALUE_PATTERN = r"[^\x00-\x1f\x7f]{1,256}"
_TAG_VALUE_RULE = (
    "must be 1-256 characters, none of them a control character (NUL, newline, tab...)"
)
_REGISTRY_SKUS = ("Basic", "Standard", "Premium")
_PRIORITIES = ("Dedicated", "LowPriority")
_NETWORK_ACCESS = ("Enabled", "Disabled")
# Azure ML's managed virtual network modes (azure-ai-docs articles/machine-learning/
# how-to-managed-network.md, ms.date 05/23/2025; pulumi-azure-native's IsolationMode enum).
ISOLATION_MODES = ("Disabled", "AllowInternetOutbound", "AllowOnlyApprovedOutbound")
# A Cognitive Services account name (its custom subdomain too: Entra ID needs one): 2-64
# letters, digits and hyphens, starting and ending with a letter or digit; the subdomain is
# unique in all Azure, so the derived name carries the stack's suffix.
_ACCOUNT_NAME_PATTERN = r"[a-zA-Z0-9][a-zA-Z0-9-]{0,62}[a-zA-Z0-9]"


class ConfigError(ValueError):
    """Bad stack configuration. `problems` holds one line per bad key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"invalid stack configuration ({len(problems)} problem(s)); "
            f"no resource was declared:\n{lines}"
        )


@dataclass(frozen=True)
class ResourceNames:
    """The name of every resource, derived or overridden in config."""

    resource_group: str
    storage_account: str
    key_vault: str
    container_registry: str
    log_analytics: str
    application_insights: str
    workspace: str
    identity: str
    gpu_compute: str
    cpu_compute: str
    endpoint: str
    foundry_hub: str
    foundry_project: str


def _field_for(key: str) -> str:
    """`storageAccountName` -> `storage_account`."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key.removesuffix("Name")).lower()


@dataclass(frozen=True)
class ClusterConfig:
    vm_size: str
    min_nodes: int
    max_nodes: int
    idle_seconds: int
    priority: str


@dataclass(frozen=True)
class ContentSafetyConfig:
    """The optional Azure AI Content Safety account (`contentSafety`)."""

    name: str
    """Account name, also its custom subdomain (`https://NAME.cognitiveservices.azure.com/`)."""
    sku: str
    deployer_principal_type: str
    """User or ServicePrincipal: what runs `pulumi up` (ARM needs the type it is told to match)."""


@dataclass(frozen=True)
class StackConfig:
    stack: str
    environment: str
    location: str
    suffix: str
    names: ResourceNames
    tags: Mapping[str, str]
    existing_resource_group: bool
    storage_sku: str
    container_registry_sku: str
    key_vault_purge_protection: bool
    key_vault_retention_days: int
    log_retention_days: int
    workspace_public_network_access: str
    workspace_isolation_mode: str
    """Managed virtual network of the workspace and hub: one of ISOLATION_MODES."""
    gpu: ClusterConfig
    cpu: ClusterConfig | None
    foundry: bool
    deprecations: tuple[str, ...] = ()
    """Warnings for deprecated keys that were accepted under their new names."""
    content_safety: ContentSafetyConfig | None = None
    """The Content Safety account, or None when `contentSafety` is off."""


class _Reader:
    """Reads raw values with their declared defaults, collecting every problem."""

    def __init__(self, given: Mapping[str, str]) -> None:
        self.problems: list[str] = []
        self.deprecations: list[str] = []
        values = dict(given)
        for old, new in DEPRECATED_KEYS.items():
            if old not in values:
                continue
            if new in values:
                self.fail(
                    old,
                    values.pop(old),
                    f"is the old name of {new}, which is set too: keep only {new}",
                )
                continue
            values[new] = values.pop(old)
            self.deprecations.append(
                f"{PROJECT}:{old} is deprecated: rename it to {new} (`pulumi config rm {old}` "
                f"and `pulumi config set {new} {values[new]}`)"
            )
        self.problems += [
            f"{PROJECT}:{key} = {values[key]!r}: unknown key; see Pulumi.yaml for the known keys"
            for key in sorted(set(values) - set(SETTINGS_BY_KEY))
        ]
        self.values: Mapping[str, str] = values

    def fail(self, key: str, value: object, rule: str) -> None:
        self.problems.append(f"{PROJECT}:{key} = {value!r}: {rule}")

    def given_empty(self, key: str, default: str) -> bool:
        """Whether `key` is set to an empty string, where leaving it unset means `default`:
        refused, so that `''` is never silently read as unset."""
        if self.values.get(key) != "":
            return False
        self.fail(key, "", f"is empty; set a value, or `pulumi config rm {key}` for {default}")
        return True

    def raw(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is not None:
            return value
        default = SETTINGS_BY_KEY[key].default
        if default is None:
            return None
        return str(default).lower() if isinstance(default, bool) else str(default)

    def string(self, key: str, pattern: str | None = None, rule: str = "") -> str:
        value = self.raw(key) or ""
        if pattern is not None and re.fullmatch(pattern, value) is None:
            self.fail(key, value, rule)
        return value

    def listed(self, key: str) -> frozenset[str]:
        """The comma-separated names of a list key."""
        return frozenset(name.strip() for name in (self.raw(key) or "").split(",") if name.strip())

    def vm_size(self, key: str) -> str:
        """A VM size in the table of Azure facts (or extraVmSizes) that Azure has not retired."""
        value = self.raw(key) or ""
        retired = retirement_problem("vm", value)
        if retired is not None:
            self.fail(key, value, retired)
        elif value not in VM_SIZES and value not in self.listed("extraVmSizes"):
            self.fail(
                key,
                value,
                f"not an Azure VM size in src/finetune_phi/core/azure_facts.py (e.g. {SETTINGS_BY_KEY[key].default}); "
                "a newer size is accepted once listed in extraVmSizes",
            )
        return value

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        return self.string(
            key, "|".join(map(re.escape, options)), f"must be one of {', '.join(options)}"
        )

    def integer(self, key: str, low: int, high: int, unit: str = "") -> int:
        value = self.raw(key) or ""
        if re.fullmatch(r"-?\d{1,9}", value.strip()) is None:
            self.fail(key, value, f"must be a whole number{unit} between {low} and {high}")
            return low
        number = int(value)
        if not low <= number <= high:
            self.fail(key, value, f"must be between {low} and {high}{unit}")
        return number

    def boolean(self, key: str) -> bool:
        value = (self.raw(key) or "").strip().lower()
        if value not in ("true", "false"):
            self.fail(key, value, "must be true or false")
        return value == "true"


def parse(values: Mapping[str, str], *, stack: str, subscription_id: str) -> StackConfig:
    """Validate raw config values (keys without the namespace) into a StackConfig."""
    read = _Reader(values)
    values = read.values
    location = read.raw("location") or ""
    if location not in REGIONS | read.listed("extraRegions"):
        near = difflib.get_close_matches(location, sorted(REGIONS), n=1)
        read.fail(
            "location",
            location,
            "not an Azure region in src/finetune_phi/core/azure_facts.py"
            + (f" (did you mean {near[0]}?)" if near else "")
            + "; a newer region is accepted once listed in extraRegions",
        )
    prefix = read.string(
        "namePrefix",
        _PREFIX_PATTERN,
        "must be 2-10 lowercase letters or digits, starting with a letter",
    )
    environment = read.raw("environment") or stack
    if read.given_empty("environment", "the stack name"):
        environment = stack
    elif re.fullmatch(_ENVIRONMENT_PATTERN, environment) is None:
        read.fail(
            "environment",
            environment,
            "must be 1-10 lowercase letters or digits, starting with a letter "
            "(it defaults to the stack name; set it when the stack name does not fit)",
        )
    owner = read.string("owner", _TAG_VALUE_PATTERN, _TAG_VALUE_RULE)
    cost_center = read.string("costCenter", _TAG_VALUE_PATTERN, _TAG_VALUE_RULE)
    existing_group = read.boolean("existingResourceGroup")
    if existing_group and values.get("resourceGroupName") is None:
        read.fail(
            "resourceGroupName",
            None,
            "is required when existingResourceGroup is true: name the group to deploy into",
        )

    group = read.raw("resourceGroupName") or naming.resource_group_name(prefix, environment)
    suffix = naming.stable_suffix(subscription_id, group, stack)
    derived = {"resourceGroupName": group, **naming.derived_names(prefix, environment, suffix)}
    # A bad prefix or environment is reported once, not again for every name built from it.
    derived_ok = all(
        re.fullmatch(pattern, value) is not None
        for pattern, value in ((_PREFIX_PATTERN, prefix), (_ENVIRONMENT_PATTERN, environment))
    )
    chosen = {key: read.raw(key) or derived[key] for key in NAME_OVERRIDES}
    empty = {key for key in NAME_OVERRIDES if read.given_empty(key, "the derived name")}
    for key, name in chosen.items():
        if key in empty:
            continue
        overridden = bool(values.get(key))
        broken = naming.RULES[key].violation(name) if overridden or derived_ok else None
        if broken is not None:
            source = "" if overridden else " (derived from namePrefix and environment)"
            read.fail(key, name, f"{broken}{source}")

    registry_sku = read.choice("containerRegistrySku", _REGISTRY_SKUS)
    public_access = read.choice("workspacePublicNetworkAccess", _NETWORK_ACCESS)
    isolation_mode = _isolation_mode(read, public_access, registry_sku)
    gpu = _gpu_cluster(read)
    cpu_enabled = read.boolean("cpuCluster")
    cpu_vm = read.vm_size("cpuVmSize")
    cpu_max = read.integer("cpuMaxNodes", 1, 100)
    config = StackConfig(
        stack=stack,
        environment=environment,
        location=location,
        suffix=suffix,
        names=ResourceNames(**{_field_for(key): name for key, name in chosen.items()}),
        tags={
            "project": PROJECT,
            "environment": environment,
            "stack": stack,
            "owner": owner,
            "cost-center": cost_center,
            "managed-by": "pulumi",
        },
        existing_resource_group=existing_group,
        storage_sku=read.choice("storageSku", _STORAGE_SKUS),
        container_registry_sku=registry_sku,
        key_vault_purge_protection=read.boolean("keyVaultPurgeProtection"),
        key_vault_retention_days=read.integer("keyVaultRetentionDays", 7, 90, " days"),
        log_retention_days=read.integer("logRetentionDays", 30, 730, " days"),
        workspace_public_network_access=public_access,
        workspace_isolation_mode=isolation_mode,
        gpu=gpu,
        cpu=ClusterConfig(cpu_vm, 0, cpu_max, gpu.idle_seconds, "Dedicated")
        if cpu_enabled
        else None,
        foundry=read.boolean("foundry"),
        deprecations=tuple(read.deprecations),
        content_safety=_content_safety(read, location, prefix, environment, suffix),
    )
    _distinct_within_scope(read, chosen, cpu=config.cpu is not None, foundry=config.foundry)
    if read.problems:
        raise ConfigError(read.problems)
    return config


def _distinct_within_scope(
    read: _Reader, names: Mapping[str, str], *, cpu: bool, foundry: bool
) -> None:
    """Two resources of one kind in one scope cannot share a name (Azure compares names
    without case): the ML workspaces of the resource group, the clusters of the workspace."""
    scopes = [
        (
            "ML workspaces of the resource group",
            ("workspaceName", *(("foundryHubName", "foundryProjectName") if foundry else ())),
        ),
        (
            "compute clusters of the workspace",
            ("gpuComputeName", *(("cpuComputeName",) if cpu else ())),
        ),
    ]
    for scope, keys in scopes:
        seen: dict[str, str] = {}
        for key in keys:
            other = seen.setdefault(names[key].lower(), key)
            if other != key:
                read.fail(key, names[key], f"is also {other}: the {scope} need distinct names")


def _isolation_mode(read: _Reader, public_access: str, registry_sku: str) -> str:
    """The managed network's mode: as set, or derived from workspacePublicNetworkAccess.

    A private workspace gets AllowInternetOutbound unless told otherwise: Azure ML says compute
    outside the network of the workspace's private endpoint "will not work" (azure-ai-docs
    articles/machine-learning/how-to-configure-private-link.md, ms.date 09/05/2024), and the
    managed network is where the clusters and the endpoint then run.
    """
    key = "workspaceIsolationMode"
    derived = "AllowInternetOutbound" if public_access == "Disabled" else "Disabled"
    if read.given_empty(key, f"{derived} (derived from workspacePublicNetworkAccess)"):
        return derived
    mode = read.raw(key) or derived
    if mode not in ISOLATION_MODES:
        read.fail(key, mode, f"must be one of {', '.join(ISOLATION_MODES)}")
    elif mode == "Disabled" and public_access == "Disabled":
        read.fail(
            key,
            mode,
            "cannot be Disabled while workspacePublicNetworkAccess is Disabled: the clusters and "
            "the endpoint would run outside the private workspace's network and could not reach "
            "it; use AllowInternetOutbound (the default for a private workspace) or "
            "AllowOnlyApprovedOutbound, or set workspacePublicNetworkAccess to Enabled",
        )
    elif mode == "AllowOnlyApprovedOutbound" and registry_sku != "Premium":
        read.fail(
            key,
            mode,
            f"needs containerRegistrySku Premium (it is {registry_sku}): in this mode the managed "
            "network reaches the registry only through a private endpoint, and only Premium "
            "registries take one",
        )
    return mode


def _content_safety(
    read: _Reader, location: str, prefix: str, environment: str, suffix: str
) -> ContentSafetyConfig | None:
    enabled = read.boolean("contentSafety")
    sku = read.choice("contentSafetySku", CONTENT_SAFETY_SKUS)
    deployer = read.choice("deployerPrincipalType", ("User", "ServicePrincipal"))
    if not enabled:
        return None
    if location not in CONTENT_SAFETY_REGIONS:
        read.fail(
            "contentSafety",
            "true",
            f"Content Safety's text analysis is not offered in {location!r}; use one of "
            f"{', '.join(sorted(CONTENT_SAFETY_REGIONS))}, or turn contentSafety off",
        )
    name = f"cs-{prefix}-{environment}-{suffix}"
    if re.fullmatch(_ACCOUNT_NAME_PATTERN, name) is None:  # a bad prefix is reported already
        return None
    return ContentSafetyConfig(name=name, sku=sku, deployer_principal_type=deployer)


def _gpu_cluster(read: _Reader) -> ClusterConfig:
    vm_size = read.vm_size("gpuVmSize")
    min_nodes = read.integer("gpuMinNodes", 0, 100)
    max_nodes = read.integer("gpuMaxNodes", 1, 100)
    if 1 <= max_nodes < min_nodes:
        read.fail("gpuMinNodes", min_nodes, f"must not exceed gpuMaxNodes ({max_nodes})")
    idle = read.integer("gpuIdleSeconds", 60, 86400, " seconds")
    priority = read.choice("gpuPriority", _PRIORITIES)
    return ClusterConfig(vm_size, min_nodes, max_nodes, idle, priority)


def load(subscription_id: str) -> StackConfig:
    """Read this stack's `finetune-phi:*` config from the running Pulumi program."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    # The whole config map, not just the known keys, so a misspelt key is reported
    # instead of silently falling back to its default. The SDK has no public accessor.
    everything = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    namespace = f"{PROJECT}:"
    values = {
        key.removeprefix(namespace): str(value)
        for key, value in everything.items()
        if key.startswith(namespace)
    }
    config = parse(values, stack=pulumi.get_stack(), subscription_id=subscription_id)
    for warning in config.deprecations:
        pulumi.log.warn(warning)
    return config
