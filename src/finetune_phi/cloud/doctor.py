"""`phi doctor`: a read-only preflight of a stack before `pulumi up`, `phi finetune submit`
and `phi deploy`. It sends only GET requests to Azure Resource Manager.

Checks, one row each, with the fix when one fails:

- config: the stack's configuration is valid (retired VM sizes included);
- quota: free vCPU quota of each VM family the fine-tune job and the deployment need, in the
  stack's region (azure-ai-ml's compute usage; deployments reserve 20 % extra on most sizes);
- models: what each fine-tuning method needs (its model offered in the region, a Foundry
  project);
- soft-deleted: a key vault or Log Analytics workspace with this stack's names that Azure
  keeps soft-deleted blocks `pulumi up`; ML workspaces are listed by the portal only;
- roles: the identity holds Contributor, Storage Blob Data Reader and AcrPull (after up);
- providers: the resource providers the stack needs are registered.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from finetune_phi.cloud import ml_client
from finetune_phi.cloud.finetune.method import Site
from finetune_phi.cloud.finetune.methods import METHODS
from finetune_phi.core.arm import ARM_ENDPOINT, ARM_SCOPE, ArmClient, ArmError, segment
from finetune_phi.core.azure_facts import API_VERSIONS, VM_SIZES
from finetune_phi.core.roles import BuiltInRole

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

CHECKS = ("config", "quota", "models", "soft-deleted", "roles", "providers")
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
DEPLOYMENT_RESERVE = 1.2
"""Managed online deployments reserve 20 % extra vCPUs, except on sizes that skip it."""


@dataclass(frozen=True)
class Row:
    check: str
    ok: bool | None
    """True passed, False failed, None not checked (the detail says why)."""
    detail: str
    fix: str = ""

    @property
    def result(self) -> str:
        return {True: "pass", False: "FAIL", None: "skip"}[self.ok]


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


def normalized(name: str) -> str:
    return re.sub(r"[\s_]", "", name).lower()


def check_config(problems: list[str]) -> list[Row]:
    if problems:
        return [Row("config", False, p, "fix the key in Pulumi.<stack>.yaml") for p in problems]
    return [Row("config", True, "the stack configuration is valid")]


def quota_needs(plan: Preflight) -> tuple[dict[str, list[str]], dict[str, int], list[Row]]:
    """(family -> what needs it, family -> vCPUs needed, rows for sizes that cannot be counted)."""
    needs: dict[str, int] = {}
    reasons: dict[str, list[str]] = {}
    rows = []

    def need(size_name: str, vcpus: float, what: str) -> None:
        size = VM_SIZES[size_name]
        needs[size.family] = needs.get(size.family, 0) + math.ceil(vcpus)
        reasons.setdefault(size.family, []).append(what)

    train = VM_SIZES.get(plan.gpu_vm_size)
    if train is None:
        rows.append(
            Row(
                "quota",
                None,
                f"{plan.gpu_vm_size} is not in the table of Azure facts",
                "add it to src/finetune_phi/core/azure_facts.py to have its quota checked",
            )
        )
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
        need(
            train.name,
            plan.job_nodes * train.vcpus,
            f"fine-tune job {plan.job_nodes} x {train.name} ({train.vcpus} vCPUs)",
        )
    serving = VM_SIZES.get(plan.deployment_vm_size)
    if serving is None:
        rows.append(
            Row(
                "quota",
                None,
                f"{plan.deployment_vm_size} is not in the table of Azure facts",
                "add it to src/finetune_phi/core/azure_facts.py to have its quota checked",
            )
        )
    else:
        reserve = 1.0 if serving.skips_reservation else DEPLOYMENT_RESERVE
        need(
            serving.name,
            plan.deployment_instances * serving.vcpus * reserve,
            f"deployment {plan.deployment_instances} x {serving.name}"
            + ("" if serving.skips_reservation else " (+20 % reserved)"),
        )
    return reasons, needs, rows


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
    """One row of Azure ML's usage list: a quota and how much of it is used."""

    name: str
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
            int(fields.get("limit") or 0),
            int(fields.get("currentValue", 0) if current is None else current),
        )


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
    reasons, needs, rows = quota_needs(plan)
    found = usages(compute, plan.location)
    for family, vcpus in needs.items():
        usage = next(
            (
                u
                for u in found
                if normalized(u.name).startswith(normalized(family))
                and "lowpriority" not in normalized(u.name)
            ),
            None,
        )
        what = "; ".join(reasons[family])
        if usage is None:
            rows.append(
                Row(
                    "quota",
                    False,
                    f"{family}: no quota in {plan.location} ({what})",
                    f"request {vcpus} vCPUs of {family} in {plan.location} (portal: Quotas > Machine learning)",
                )
            )
            continue
        free = usage.limit - usage.current
        detail = f"{usage.name}: {vcpus} vCPUs needed, {free} free ({what})"
        fix = (
            ""
            if free >= vcpus
            else (
                f"request {vcpus - free} more vCPUs of {family} in {plan.location} "
                "(portal: Quotas > Machine learning), or choose a smaller size"
            )
        )
        rows.append(Row("quota", free >= vcpus, detail, fix))
    return rows


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
            "Azure ML studio > Recently deleted workspaces; `python -m finetune_phi.cloud.cleanup --purge` avoids them",
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
    return f"\n{failed} check(s) failed" if failed else "\nall checks passed"


def render(rows: list[Row]) -> str:
    return f"{render_header(rows)}\n{render_summary(rows)}"
