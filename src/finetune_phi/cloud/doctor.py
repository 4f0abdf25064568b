"""`phi doctor`: a read-only preflight of a stack before `pulumi up`, `phi finetune submit`
and `phi deploy`. It sends only GET requests to Azure Resource Manager.

Checks, one row each, with the fix when one fails:

- config: the stack's configuration is valid (retired VM sizes included);
- quota: free vCPU quota in the stack's region, as Azure ML counts it (azure-ai-ml's compute
  usage): each VM family's dedicated vCPUs and the regional total of dedicated vCPUs the
  fine-tune job and the deployment need, or the regional low-priority pool for the job on a
  LowPriority cluster; a managed online deployment needs ceil(1.2 x instances) x vCPUs, all
  but the sizes Azure exempts from that reserve;
- models: what each fine-tuning method needs (its model offered in the region, a Foundry
  project);
- soft-deleted: a key vault or Log Analytics workspace with this stack's names that Azure
  keeps soft-deleted blocks `pulumi up`; ML workspaces are listed by the portal only;
- roles: the identity holds Contributor, Storage Blob Data Reader and AcrPull (after up);
- providers: the resource providers the stack needs are registered;
- images: the base images' tags were checked within the last 180 days (older: a warning,
  with where to look for a newer tag).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import requests

from finetune_phi.cloud import ml_client
from finetune_phi.cloud.finetune.method import Site
from finetune_phi.cloud.finetune.methods import METHODS
from finetune_phi.core.arm import ARM_ENDPOINT, ARM_SCOPE, ArmClient, ArmError, segment
from finetune_phi.core.azure_facts import (
    API_VERSIONS,
    BASE_IMAGE_CHECKED,
    BASE_IMAGE_MAX_AGE_DAYS,
    BASE_IMAGES,
    QUOTA_REQUEST,
    VM_SIZES,
    VmSize,
)
from finetune_phi.core.roles import BuiltInRole

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

CHECKS = ("config", "quota", "models", "soft-deleted", "roles", "providers", "images")
PROVIDERS = (
    "Microsoft.MachineLearningServices",
    "Microsoft.Storage",
    "Microsoft.KeyVault",
    "Microsoft.ContainerRegistry",
    "Microsoft.Insights",
    "Microsoft.OperationalInsights",
    "Microsoft.ManagedIdentity",
)
# Serverless fine-tuning also needs Microsoft.Network (azure-ai-docs fine-tune-serverless.md).
FOUNDRY_PROVIDERS = ("Microsoft.Network",)
DEPLOYMENT_RESERVE = Fraction(6, 5)
"""Managed online deployments reserve 20 % more whole instances, except on sizes that skip it
(exact: 1.2 as a float would make ceil(1.2 x 5) seven)."""


@dataclass(frozen=True)
class Row:
    check: str
    ok: bool | None
    """True passed, False failed, None not checked (the detail says why)."""
    detail: str
    fix: str = ""
    warning: bool = False
    """Worth acting on, but not a failure (ok is None)."""

    @property
    def result(self) -> str:
        return "warn" if self.warning else {True: "pass", False: "FAIL", None: "skip"}[self.ok]


@dataclass(frozen=True)
class Preflight:
    """What the checks look at: the stack's names and sizes, and what will run on it."""

    subscription_id: str
    location: str
    resource_group: str
    key_vault: str
    log_analytics: str
    ml_workspaces: tuple[str, ...]
    storage_account: str
    container_registry: str
    gpu_vm_size: str
    gpu_max_nodes: int
    foundry: bool
    identity_principal_id: str | None = None
    job_nodes: int = 1
    job_gpus_per_node: int = 1
    deployment_vm_size: str = ""
    deployment_instances: int = 1
    gpu_priority: str = "Dedicated"
    """The GPU cluster's `gpuPriority`: LowPriority nodes count against the regional
    low-priority pool instead of their family's dedicated vCPUs."""
    stack: str = "dev"


def normalized(name: str) -> str:
    return re.sub(r"[\s_]", "", name).lower()


def check_config(problems: list[str]) -> list[Row]:
    if problems:
        return [Row("config", False, p, "fix the key in Pulumi.<stack>.yaml") for p in problems]
    return [Row("config", True, "the stack configuration is valid")]


@dataclass(frozen=True)
class Pool:
    """One quota Azure ML counts vCPUs against: a VM family's dedicated vCPUs, the regional
    total of dedicated vCPUs, or the regional pool of low-priority vCPUs."""

    kind: str
    """"family", "dedicated" or "lowpriority"."""
    family: str = ""
    """The VM family, for kind "family"."""

    @property
    def label(self) -> str:
        return {
            "family": f"{self.family} dedicated vCPUs",
            "dedicated": REGIONAL_DEDICATED,
            "lowpriority": REGIONAL_LOW_PRIORITY,
        }[self.kind]


REGIONAL_DEDICATED = "Total Cluster Dedicated Regional vCPUs"
REGIONAL_LOW_PRIORITY = "Total Cluster LowPriority Regional vCPUs"
"""The regional rows' names in Azure ML's usage list (azure-rest-api-specs
Microsoft.MachineLearningServices stable/2024-10-01 examples/Usage/list.json)."""


DEDICATED = Pool("dedicated")


@dataclass
class Need:
    """The vCPUs a pool must have free, what needs them, and how to need fewer."""

    vcpus: int = 0
    reasons: list[str] = field(default_factory=list)
    smaller: list[str] = field(default_factory=list)


def deployment_vcpus(size: VmSize, instances: int) -> int:
    """The quota a managed online deployment of `instances` x `size` needs: Azure reserves
    20 % more whole instances, `ceil(1.2 x instances) x vCPUs`, except on the sizes that skip
    the reserve (`azure_facts.SKIPS_RESERVATION`)."""
    if size.skips_reservation:
        return instances * size.vcpus
    return math.ceil(DEPLOYMENT_RESERVE * instances) * size.vcpus


def quota_needs(plan: Preflight) -> tuple[dict[Pool, Need], list[Row]]:
    """(pool -> its need, rows for what cannot be counted or cannot run)."""
    needs: dict[Pool, Need] = {}
    rows = []

    def need(pools: Iterable[Pool], vcpus: int, what: str, smaller: str) -> None:
        for pool in pools:
            found = needs.setdefault(pool, Need())
            found.vcpus += vcpus
            found.reasons.append(what)
            found.smaller.append(smaller)

    def unknown(size: str) -> Row:
        return Row(
            "quota",
            None,
            f"{size} is not in the table of Azure facts",
            "add it to src/finetune_phi/core/azure_facts.py to have its quota checked",
        )

    train = VM_SIZES.get(plan.gpu_vm_size)
    if train is None:
        rows.append(unknown(plan.gpu_vm_size))
    else:
        if plan.job_nodes > plan.gpu_max_nodes:
            rows.append(
                Row(
                    "quota",
                    False,
                    f"the job asks for {plan.job_nodes} nodes; the cluster has at most {plan.gpu_max_nodes}",
                    f"pulumi config set gpuMaxNodes {plan.job_nodes} && pulumi up",
                )
            )
        if plan.job_gpus_per_node > train.gpus:
            rows.append(
                Row(
                    "quota",
                    False,
                    f"the job asks for {plan.job_gpus_per_node} GPUs per node; {train.name} has {train.gpus}",
                    "--gpus-per-node at most the size's GPUs, or a larger gpuVmSize",
                )
            )
        low_priority = plan.gpu_priority == "LowPriority"
        need(
            [Pool("lowpriority")] if low_priority else [Pool("family", train.family), DEDICATED],
            plan.job_nodes * train.vcpus,
            f"fine-tune job {plan.job_nodes} x {train.name} ({train.vcpus} vCPUs"
            + (", low priority)" if low_priority else ")"),
            "a smaller gpuVmSize or fewer --nodes",
        )
    serving = VM_SIZES.get(plan.deployment_vm_size)
    if serving is None:
        rows.append(unknown(plan.deployment_vm_size))
    else:
        need(
            [Pool("family", serving.family), DEDICATED],
            deployment_vcpus(serving, plan.deployment_instances),
            f"deployment {plan.deployment_instances} x {serving.name} ({serving.vcpus} vCPUs; "
            + (
                "Azure holds no reserve on this size)"
                if serving.skips_reservation
                else f"Azure holds ceil(1.2 x {plan.deployment_instances}) = "
                f"{math.ceil(DEPLOYMENT_RESERVE * plan.deployment_instances)} instances)"
            ),
            "a smaller --instance-type or a lower --instance-count",
        )
    return needs, rows


@dataclass(frozen=True)
class Clients:
    """What the checks read through, on one HTTP session that follows no redirect:
    azure-ai-ml's compute operations for the quota, ArmClient for the rest."""

    arm: ArmClient
    compute: Any
    """azure-ai-ml's `MLClient.compute`."""

    @classmethod
    def signed_in(
        cls,
        credential: TokenCredential,
        subscription_id: str,
        session: requests.Session,
        endpoint: str = ARM_ENDPOINT,
    ) -> Clients:
        """ArmClient at `endpoint`; azure-ai-ml at Azure's public Resource Manager with
        ArmClient's limits (`ml_client.on_session`)."""
        arm = ArmClient(session, lambda: credential.get_token(ARM_SCOPE).token, endpoint=endpoint)
        ml = ml_client.on_session(credential, arm, session, subscription_id)
        return cls(arm, ml.compute)


@dataclass(frozen=True)
class Usage:
    """One row of Azure ML's usage list: a quota, its scope and how much of it is used."""

    name: str
    type: str
    limit: int
    current: int

    @classmethod
    def of(cls, usage: Any) -> Usage:
        """From azure-ai-ml's `Usage`, whose `_from_rest_object` copies the REST model's
        wire names in azure-ai-ml 1.35: `name` is a dict and the current value is in
        `currentValue` (`current_value` stays None)."""
        fields = vars(usage)
        name = fields.get("name") or {}
        current = fields.get("current_value")
        return cls(
            str(name.get("value", "") if isinstance(name, dict) else name.value),
            str(fields.get("type") or ""),
            int(fields.get("limit") or 0),
            int(fields.get("currentValue") or 0) if current is None else int(current),
        )

    @property
    def scope(self) -> str:
        """What the row counts, from its type: "family", "dedicated", "lowpriority", "total"
        (the subscription's, in the region), "workspace" or "compute" (one workspace's or one
        cluster's share, under the same names; Azure spells some `workspace/...`)."""
        kind = self.type.lower().removeprefix("microsoft.machinelearningservices/")
        if re.fullmatch(r"workspaces?/computes/usages", kind):
            return "compute"
        if re.fullmatch(r"workspaces?/usages", kind):
            return "workspace"
        return {
            "vmfamily/usages": "family",
            "dedicatedcores/usages": "dedicated",
            "lowprioritycores/usages": "lowpriority",
            "totalcores/usages": "total",
        }.get(kind, "other")

    def counts(self, pool: Pool) -> bool:
        """Whether this row is the subscription's quota for `pool`, by its type and name."""
        name = normalized(self.name)
        if self.scope != pool.kind:
            return False
        if pool.kind == "family":
            return name.startswith(normalized(pool.family)) and "dedicated" in name
        return name == normalized(pool.label)


def usages(compute: Any, location: str) -> list[Usage]:
    """Azure ML's usage list for `location`; ArmError when Azure refuses it (a redirect
    included: none is followed)."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    what = f"compute usage in {location}"
    try:
        return [Usage.of(usage) for usage in compute.list_usage(location=location)]
    except ClientAuthenticationError:
        raise  # not signed in: `phi` names the fix
    except HttpResponseError as error:
        status = error.status_code or 0
        response: Any = error.response  # the transport's: azure-core types it without headers
        if 300 <= status < 400 and response is not None:
            target = response.headers.get("Location", "nowhere")
            raise ArmError(
                f"{what}: Azure answered a redirect (HTTP {status}) to {target}; not followed"
            ) from None
        found = error.error
        reason = f"{found.code}: {found.message}" if found else error.reason
        raise ArmError(f"{what}: HTTP {status}: {reason}") from None


def check_quota(plan: Preflight, compute: Any) -> list[Row]:
    """One row per quota the plan needs: which quota, how much is free, how much is needed,
    and the fix when it is short (a quota request, or a smaller size)."""
    needs, rows = quota_needs(plan)
    found = usages(compute, plan.location)
    for pool, need in needs.items():
        what = "; ".join(need.reasons)
        smaller = ", or ".join(dict.fromkeys(need.smaller))
        usage = next((u for u in found if u.counts(pool)), None)
        if usage is None:
            rows.append(
                Row(
                    "quota",
                    False,
                    f"{pool.label}: Azure lists no such quota in {plan.location}; "
                    f"{need.vcpus} vCPUs needed ({what})",
                    f"request {need.vcpus} vCPUs of {pool.label} in {plan.location} "
                    f"({QUOTA_REQUEST}), or {smaller}",
                )
            )
            continue
        if usage.limit < 0:
            rows.append(
                Row(
                    "quota",
                    None,
                    f"{usage.name}: Azure gives no limit (-1); {need.vcpus} vCPUs needed ({what})",
                )
            )
            continue
        free = usage.limit - usage.current
        enough = free >= need.vcpus
        rows.append(
            Row(
                "quota",
                enough,
                f"{usage.name}: {need.vcpus} vCPUs needed, {free} free ({what})",
                ""
                if enough
                else f"request {need.vcpus - free} more vCPUs of {usage.name} in "
                f"{plan.location} ({QUOTA_REQUEST}), or {smaller}",
            )
        )
    return rows


def check_images(today: date) -> list[Row]:
    """The base images' tags were checked at most BASE_IMAGE_MAX_AGE_DAYS ago; older, a
    warning (never a failure): Azure ships fixes only as new tags, listed by MCR."""
    age = (today - BASE_IMAGE_CHECKED).days
    current = [image for image in BASE_IMAGES.values() if image.deprecated is None]
    if age <= BASE_IMAGE_MAX_AGE_DAYS:
        return [
            Row(
                "images",
                True,
                f"base image tags checked on {BASE_IMAGE_CHECKED:%Y-%m-%d}, {age} days ago",
            )
        ]
    return [
        Row(
            "images",
            None,
            f"{image.reference}: its tag was checked on {BASE_IMAGE_CHECKED:%Y-%m-%d}, "
            f"{age} days ago (more than {BASE_IMAGE_MAX_AGE_DAYS}); a newer tag may carry fixes",
            f"look for a newer tag at {image.tags_url} and update "
            "src/finetune_phi/core/azure_facts.py",
            warning=True,
        )
        for image in current
    ]


def check_models(plan: Preflight) -> list[Row]:
    """What each registered fine-tuning method needs of the stack."""
    site = Site(plan.location, plan.foundry)
    return [
        Row("models", finding.ok, finding.detail, finding.fix)
        for method in METHODS.values()
        for finding in method.preflight(site)
    ]


def check_soft_deleted(plan: Preflight, arm: ArmClient) -> list[Row]:
    sub, location = segment(plan.subscription_id), segment(plan.location)
    vault = arm.get(
        f"/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/{location}"
        f"/deletedVaults/{segment(plan.key_vault)}?api-version={API_VERSIONS['Microsoft.KeyVault']}"
    )
    rows = [
        Row(
            "soft-deleted",
            False,
            f"key vault {plan.key_vault} is soft-deleted",
            f"az keyvault purge --name {plan.key_vault} --location {plan.location} "
            "(impossible with purge protection: set keyVaultName to a new name)",
        )
        if vault is not None
        else Row("soft-deleted", True, f"no soft-deleted key vault {plan.key_vault}")
    ]
    logs = {
        str(item.get("name", "")).lower()
        for item in arm.list(
            f"/subscriptions/{sub}/providers/Microsoft.OperationalInsights/deletedWorkspaces"
            f"?api-version={API_VERSIONS['Microsoft.OperationalInsights']}"
        )
    }
    rows.append(
        Row(
            "soft-deleted",
            False,
            f"Log Analytics workspace {plan.log_analytics} is soft-deleted",
            f"recover it, or delete it for good: az monitor log-analytics workspace delete --force "
            f"--resource-group {plan.resource_group} --workspace-name {plan.log_analytics}",
        )
        if plan.log_analytics.lower() in logs
        else Row(
            "soft-deleted", True, f"no soft-deleted Log Analytics workspace {plan.log_analytics}"
        )
    )
    rows.append(
        Row(
            "soft-deleted",
            None,
            f"ML workspaces {', '.join(plan.ml_workspaces)}: Azure lists soft-deleted ones in the portal only",
            "Azure ML studio > Recently deleted workspaces; "
            f"`phi cleanup --stack {plan.stack} --purge` avoids them",
        )
    )
    return rows


def check_roles(plan: Preflight, arm: ArmClient) -> list[Row]:
    if not plan.identity_principal_id:
        return [
            Row(
                "roles",
                None,
                "the identity exists after `pulumi up`",
                "run `phi doctor --outputs FILE` once the stack is up",
            )
        ]
    sub = segment(plan.subscription_id)
    assignments = list(
        arm.list(
            f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments"
            f"?$filter=principalId%20eq%20'{segment(plan.identity_principal_id)}'"
            f"&api-version={API_VERSIONS['Microsoft.Authorization']}"
        )
    )
    group = f"/resourcegroups/{plan.resource_group}".lower()
    expected = {
        BuiltInRole.CONTRIBUTOR: group,
        BuiltInRole.STORAGE_BLOB_DATA_READER: f"/storageaccounts/{plan.storage_account}".lower(),
        BuiltInRole.ACR_PULL: f"/registries/{plan.container_registry}".lower(),
    }
    rows = []
    for role, scope in expected.items():
        held = any(
            str(a.get("properties", {}).get("roleDefinitionId", "")).lower().endswith(role.value)
            and str(a.get("properties", {}).get("scope", "")).lower().endswith(scope)
            for a in assignments
        )
        name = role.name.replace("_", " ").title()
        rows.append(
            Row(
                "roles",
                held,
                f"{name} on ...{scope}",
                "" if held else "run `pulumi up` again: the stack grants it",
            )
        )
    return rows


def check_providers(plan: Preflight, arm: ArmClient) -> list[Row]:
    rows = []
    version = API_VERSIONS["Microsoft.Resources"]
    for namespace in (*PROVIDERS, *(FOUNDRY_PROVIDERS if plan.foundry else ())):
        found = arm.get(
            f"/subscriptions/{segment(plan.subscription_id)}/providers/{namespace}?api-version={version}"
        )
        state = (found or {}).get("registrationState", "NotRegistered")
        rows.append(
            Row(
                "providers",
                state == "Registered",
                f"{namespace}: {state}",
                "" if state == "Registered" else f"az provider register --namespace {namespace}",
            )
        )
    return rows


def today() -> date:
    return date.today()


def run(plan: Preflight, clients: Clients) -> list[Row]:
    """Every check after config (which needs no sign-in and runs before it), in order; a
    check that Azure refuses becomes a failed row of its own."""
    arm = clients.arm
    checks: list[Callable[[], Iterable[Row]]] = [
        lambda: check_quota(plan, clients.compute),
        lambda: check_models(plan),
        lambda: check_soft_deleted(plan, arm),
        lambda: check_roles(plan, arm),
        lambda: check_providers(plan, arm),
        lambda: check_images(today()),
    ]
    rows: list[Row] = []
    for name, check in zip(CHECKS[1:], checks, strict=True):
        try:
            rows.extend(check())
        except ArmError as error:
            rows.append(
                Row(
                    name,
                    False,
                    str(error),
                    "the signed-in identity needs Reader on the subscription",
                )
            )
    return rows


def render_header(rows: list[Row]) -> str:
    """The table's head and its first rows (printed before the checks that need Azure)."""
    lines = ["| check | result | detail | fix |", "|---|---|---|---|"]
    return "\n".join([*lines, render_rows(rows)] if rows else lines)


def render_rows(rows: list[Row]) -> str:
    return "\n".join(f"| {r.check} | {r.result} | {r.detail} | {r.fix} |" for r in rows)


def render_summary(rows: list[Row]) -> str:
    failed = sum(r.ok is False for r in rows)
    warned = sum(r.warning for r in rows)
    also = f" ({warned} warning(s))" if warned else ""
    return f"\n{failed} check(s) failed{also}" if failed else f"\nall checks passed{also}"


def render(rows: list[Row]) -> str:
    return f"{render_header(rows)}\n{render_summary(rows)}"
